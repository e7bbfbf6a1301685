/**
 * JMH microbenchmarks of jvhost's data path. Run them with {@code perf/jmh} (all) or
 * {@code perf/jmh VirtQueueBench -f 1 -wi 2 -i 3} (JMH's usual options).
 */
package io.jvhost.perf.jmh;
