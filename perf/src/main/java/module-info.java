/** placeholder until its issue lands. */
module io.jvhost.perf {
    requires io.jvhost.core;
}
