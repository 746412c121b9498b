// A Caravan module in C as a WASI command: reads its JSON input on standard input and writes it back on standard
// output with every string, keys included, in capitals ({"greeting": "hi", "n": 1} -> {"GREETING": "HI", "N": 1}).
// Build it without
// libc (WASI's two functions are declared below):
//
//   clang --target=wasm32 -nostdlib -O2 -o shout.wasm shout.c
//
// and upload it: a module that exports `_start` is run as a WASI preview 1 command. It sees its input on stdin, its
// output is what it writes to stdout, what it writes to stderr goes to the log; it has no files, no environment, and
// a clock that stays at the epoch. Exiting with a code other than 0 fails the call (`exit_failure`).

typedef unsigned int u32;

struct iovec {
    void *base;
    u32 length;
};

__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_read")))
u32 fd_read(u32 fd, struct iovec *iovs, u32 count, u32 *read);
__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write")))
u32 fd_write(u32 fd, const struct iovec *iovs, u32 count, u32 *written);
__attribute__((import_module("wasi_snapshot_preview1"), import_name("proc_exit"))) void proc_exit(u32 code);

static unsigned char buffer[1 << 20];

static void write_all(u32 fd, const unsigned char *bytes, u32 length) {
    while (length > 0) {
        struct iovec iov = {(void *)bytes, length};
        u32 written = 0;
        if (fd_write(fd, &iov, 1, &written) != 0 || written == 0) proc_exit(2);
        bytes += written;
        length -= written;
    }
}

void _start(void) {
    u32 length = 0;
    for (;;) {
        struct iovec iov = {buffer + length, sizeof buffer - length};
        u32 read = 0;
        if (fd_read(0, &iov, 1, &read) != 0) proc_exit(1);
        if (read == 0) break;
        length += read;
        if (length == sizeof buffer) {
            static const unsigned char message[] = "input larger than 1 MiB\n";
            write_all(2, message, sizeof message - 1);
            proc_exit(3);
        }
    }
    // Capitalize inside strings only, so that keys, numbers and literals stay valid JSON.
    int in_string = 0, escaped = 0;
    for (u32 i = 0; i < length; i++) {
        unsigned char c = buffer[i];
        if (!in_string) {
            if (c == '"') in_string = 1;
        } else if (escaped) {
            escaped = 0;
        } else if (c == '\\') {
            escaped = 1;
        } else if (c == '"') {
            in_string = 0;
        } else if (c >= 'a' && c <= 'z') {
            buffer[i] = c - 'a' + 'A';
        }
    }
    write_all(1, buffer, length);
}
