/** placeholder until its issue lands. */
module io.jvhost.net {
    requires io.jvhost.core;
}
