-- The benchmarks' call data: variables and transcript that make up a 1.8 kB
-- body (test/bench/run.sh, test/bench/trigger_cost.sh,
-- test/bench/enqueue_shapes.sh).
CREATE TABLE bench_template AS
SELECT jsonb_build_object('summary', repeat('The customer asked about order status. ', 4)) AS variables,
       (SELECT jsonb_agg(jsonb_build_object('speaker', CASE WHEN g % 2 = 0 THEN 'ai' ELSE 'customer' END,
                                            'text', 'Sentence number ' || g || ' of the conversation, about the order.',
                                            'start', g * 3.5))
          FROM generate_series(1, 8) g) AS transcript;
