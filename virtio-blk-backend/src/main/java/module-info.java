/** placeholder until its issue lands. */
module io.jvhost.blk {
    requires io.jvhost.core;
}
