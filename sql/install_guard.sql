/*
 * install_guard.sql — the first statement of every install script
 *
 * Everything the extension installs runs as its owner, a superuser, and so
 * do the triggers and the worker.  A schema someone else made (or filled)
 * beforehand could hold functions that a statement here would pick instead of
 * pg_catalog's (format(text, name) beats format(text, VARIADIC "any")), and
 * its owner could drop and replace the extension's objects later: refuse it.
 * Only install scripts start with this (an upgrade finds the schema full).
 */
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
				 JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
				WHERE n.nspname = 'aloro_webhook' AND NOT r.rolsuper)
	   OR EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = 'aloro_webhook'::pg_catalog.regnamespace)
	   OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = 'aloro_webhook'::pg_catalog.regnamespace)
	   OR EXISTS (SELECT 1 FROM pg_catalog.pg_type WHERE typnamespace = 'aloro_webhook'::pg_catalog.regnamespace)
	   OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator WHERE oprnamespace = 'aloro_webhook'::pg_catalog.regnamespace) THEN
		RAISE EXCEPTION 'schema aloro_webhook already exists and is not the extension''s own'
			USING ERRCODE = 'duplicate_schema',
				  DETAIL = 'The extension runs its triggers and its worker with superuser rights, so it installs only into a schema that CREATE EXTENSION makes for it.',
				  HINT = 'Drop or rename that schema, then run CREATE EXTENSION aloro_webhook again.';
	END IF;
END
$$;
