/*
 * wasmpool.h: write wasmpool guests in C.
 *
 * Every import of the wasmpool guest ABI, version 1 (docs/abi.md, which is
 * normative: this header follows it name for name and type for type), the
 * version marker export, the status codes, and small inline helpers for the
 * everyday cases: read the task's input, write its result, report an error,
 * put and get queue messages, call a host function.
 *
 * Build with clang's wasm32-wasi target (Debian 12: `apt-get install clang
 * lld wasi-libc libclang-rt-14-dev-wasm32`):
 *
 *     # a task module (a WASI reactor: no main, tasks are exports)
 *     clang --target=wasm32-wasi -O2 -mexec-model=reactor \
 *         -I guest-sdk/c tasks.c -o tasks.wasm
 *     # a WASI command (main), for `wasmpool run`
 *     clang --target=wasm32-wasi -O2 -I guest-sdk/c command.c -o command.wasm
 *
 * A task:
 *
 *     #include "wasmpool.h"
 *
 *     WASMPOOL_TASK(square) {
 *         int64_t x;
 *         if (!wasmpool_input_i64(&x)) return wasmpool_reject("expected an integer");
 *         wasmpool_output_i64(x * x);
 *         return WASMPOOL_OK;
 *     }
 *
 *     $ seq 1 3 | wasmpool map tasks.wasm --task square --values
 *
 * Including this header defines the marker export `wasmpool_abi_v1` (a weak
 * definition, so any number of files may include it). Every pointer below
 * is an offset into the module's own memory, which wasm-ld exports as
 * `memory` by default, as the ABI requires. The host copies every buffer in
 * or out during the call and keeps no pointer afterwards.
 *
 * Not declared here: the ABI's memory import `wasmpool::shared` (the shared
 * region as a wasm memory). C compilers cannot import a second memory; reach
 * the region through the `wasmpool_shm_*` functions, which are atomic.
 *
 * The helpers need wasi-libc (malloc, strlen, snprintf, strtoll). Define
 * WASMPOOL_NO_LIBC before including this header to get only the raw imports,
 * the marker and the constants (for freestanding builds).
 */

#ifndef WASMPOOL_H
#define WASMPOOL_H

#if !defined(__wasm32__)
#error "wasmpool.h declares wasm imports: build with clang --target=wasm32-wasi"
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Attributes                                                                */
/* ------------------------------------------------------------------------ */

/* Declares a function imported from the host module `wasmpool` as NAME. */
#define WASMPOOL_IMPORT(name) \
    __attribute__((import_module("wasmpool"), import_name(#name)))

/* Exports the function it precedes under NAME: how a numeric task is made
   (any function whose parameters and results are int32_t, int64_t, float or
   double; see docs/abi.md, "Numeric exports"). */
#define WASMPOOL_EXPORT(name) __attribute__((export_name(#name)))

/* Defines ABI task NAME: the export `wasmpool_task_NAME`, of type
   `() -> i32`. Write its body after the macro; it reads its input with
   wasmpool_input_*(), writes its result with wasmpool_output*() and returns
   a status (WASMPOOL_OK, or the value of wasmpool_fail / wasmpool_reject). */
#define WASMPOOL_TASK(name)                                        \
    int32_t wasmpool_task_##name(void);                            \
    __attribute__((export_name("wasmpool_task_" #name))) int32_t \
        wasmpool_task_##name(void)

/* ------------------------------------------------------------------------ */
/* The version marker                                                        */
/* ------------------------------------------------------------------------ */

/* The ABI version marker (docs/abi.md, "Version marker"): a module that
   imports from `wasmpool` or exports a task must export it. The host never
   calls it; its name declares ABI version 1. Weak, so that every file of a
   module may include this header. */
void wasmpool_abi_v1(void);
__attribute__((weak, export_name("wasmpool_abi_v1"))) void wasmpool_abi_v1(void) {}

/* ------------------------------------------------------------------------ */
/* Constants                                                                 */
/* ------------------------------------------------------------------------ */

/* What a task returns (docs/abi.md, "Exports"). */
enum {
    /* Success: the output holds the result (one JSON value for the CLI). */
    WASMPOOL_OK = 0,
    /* The task failed by its own judgement: the output holds a UTF-8
       message; reported as error kind `guest`. */
    WASMPOOL_GUEST_ERROR = 1,
    /* The task rejected its input: the output holds a UTF-8 message;
       reported as error kind `input`. */
    WASMPOOL_BAD_INPUT = 2
};

/* A timeout (in milliseconds) that waits as long as it takes. Any negative
   timeout does. */
#define WASMPOOL_FOREVER ((int64_t)-1)

/* What wasmpool_queue_put returns. */
enum {
    /* The message is in the queue. */
    WASMPOOL_QUEUE_PUT = 0,
    /* The timeout passed while the queue stayed full. */
    WASMPOOL_QUEUE_FULL = 1,
    /* The queue is closed. */
    WASMPOOL_QUEUE_CLOSED = 2
};

/* What wasmpool_queue_get returns instead of a length (>= 0). */
/* The timeout passed while the queue stayed empty. */
#define WASMPOOL_QUEUE_EMPTY ((int64_t)-1)
/* The queue is closed and drained: a consumer's loop ends here. */
#define WASMPOOL_QUEUE_DRAINED ((int64_t)-2)
/* (wasmpool_queue_get_alloc only) the message did not fit in memory. */
#define WASMPOOL_QUEUE_NO_MEMORY ((int64_t)-3)

/* What wasmpool_queue_put_many returns instead of a count (>= 0). */
/* The timeout passed while the queue stayed full: none was put. */
#define WASMPOOL_BATCH_FULL ((int32_t)-1)
/* The queue is closed: none was put. */
#define WASMPOOL_BATCH_CLOSED ((int32_t)-2)

/* What wasmpool_shm_wait_i32 returns. */
enum {
    /* Woken by wasmpool_shm_notify. */
    WASMPOOL_WAIT_WOKEN = 0,
    /* The value was not `expected` (nothing to wait for). */
    WASMPOOL_WAIT_NOT_EQUAL = 1,
    /* The timeout passed. */
    WASMPOOL_WAIT_TIMED_OUT = 2
};

/* ------------------------------------------------------------------------ */
/* Imports: the task's input and output (docs/abi.md, "Imports")             */
/* ------------------------------------------------------------------------ */

/* `input_len() -> i32`: the length in bytes of the current task's input
   (0 outside a task, e.g. in a constructor run by `_initialize`). */
WASMPOOL_IMPORT(input_len) int32_t wasmpool_input_len(void);

/* `input_read(ptr, len) -> i32`: copies the first min(len, input_len())
   input bytes to `ptr`; returns how many it copied. Traps (kind `abi`) if
   [ptr, ptr + len) is outside memory or len < 0. */
WASMPOOL_IMPORT(input_read) int32_t wasmpool_input_read(void *ptr, int32_t len);

/* `output_write(ptr, len)`: appends `len` bytes at `ptr` to the task's
   output, which starts empty for each task; call it as often as needed.
   Traps (kind `abi`) on a bad range or when the output would pass the
   output limit (64 MiB by default). */
WASMPOOL_IMPORT(output_write) void wasmpool_output_write(const void *ptr, int32_t len);

/* `task_io(ptr)`: registers the 20-byte task I/O area at `ptr` (4-aligned;
   -1 for none): five uint32_t, in_ptr, in_cap (the guest says where the
   host may write the next input), in_len (the host writes the input's
   length there before each task, or UINT32_MAX if it did not write it),
   out_ptr, out_len (the host sets out_len to UINT32_MAX before each task;
   a task that sets them hands over its output without output_write). The
   calls above keep working; see docs/abi.md. Traps (kind `abi`) if the
   area is misaligned or outside memory. */
WASMPOOL_IMPORT(task_io) void wasmpool_task_io(void *ptr);

/* `trap_message(ptr, len)`: records a UTF-8 message that the host attaches
   to the error if the task traps afterwards (the host keeps at most 4096
   bytes; each call replaces the last; cleared when a task starts). */
WASMPOOL_IMPORT(trap_message) void wasmpool_trap_message(const void *ptr, int32_t len);

/* `worker_index() -> i32`: this instance's worker index, in
   [0, worker_count()); for `wasmpool run`, the copy's index. */
WASMPOOL_IMPORT(worker_index) int32_t wasmpool_worker_index(void);

/* `worker_count() -> i32`: the number of workers (or copies). */
WASMPOOL_IMPORT(worker_count) int32_t wasmpool_worker_count(void);

/* ------------------------------------------------------------------------ */
/* Imports: queues (docs/abi.md, "Queues")                                   */
/* ------------------------------------------------------------------------ */

/* `queue_open(name_ptr, name_len) -> i32`: a handle (>= 0) for the queue
   named by the UTF-8 bytes, or -1 if the pool or group declares no such
   queue (`--queue NAME`). */
WASMPOOL_IMPORT(queue_open) int32_t wasmpool_queue_open(const char *name, int32_t name_len);

/* `queue_put(q, ptr, len, timeout_ms) -> i32`: copies the message
   [ptr, ptr + len) into queue `q`, waiting up to `timeout_ms` for room
   (negative: forever). Returns WASMPOOL_QUEUE_PUT, WASMPOOL_QUEUE_FULL or
   WASMPOOL_QUEUE_CLOSED. Traps on a bad handle, a bad range, or a message
   larger than the queue's byte budget. */
WASMPOOL_IMPORT(queue_put)
int32_t wasmpool_queue_put(int32_t q, const void *ptr, int32_t len, int64_t timeout_ms);

/* `queue_get(q, timeout_ms) -> i64`: takes the oldest message of `q`,
   waiting up to `timeout_ms` for one. Returns its length (>= 0; the host
   holds it for wasmpool_queue_message), WASMPOOL_QUEUE_EMPTY (timed out)
   or WASMPOOL_QUEUE_DRAINED (closed and drained). Traps on a bad handle. */
WASMPOOL_IMPORT(queue_get) int64_t wasmpool_queue_get(int32_t q, int64_t timeout_ms);

/* `queue_message(ptr, len) -> i32`: copies the first min(len, length)
   bytes of the message taken by the last wasmpool_queue_get to `ptr` and
   releases it; returns the bytes copied. Traps if no message is held. */
WASMPOOL_IMPORT(queue_message) int32_t wasmpool_queue_message(void *ptr, int32_t len);

/* `queue_close(q)`: closes the queue for everyone: puts fail, and gets
   fail once it is drained. */
WASMPOOL_IMPORT(queue_close) void wasmpool_queue_close(int32_t q);

/* `queue_len(q) -> i32`: the messages waiting (racy by nature: use it for
   reports, never to decide that a consumer is done). */
WASMPOOL_IMPORT(queue_len) int32_t wasmpool_queue_len(int32_t q);

/* Batches (docs/abi.md, "Batches"): many messages per host call, laid end
   to end, each a 4-byte little-endian length followed by its bytes. */

/* `queue_put_many(q, ptr, len, count, timeout_ms) -> i32`: puts the first
   messages of the batch of `count` messages at [ptr, ptr + len), waiting
   up to `timeout_ms` for room for the first, then as many as fit at once.
   Returns how many were put (1..count, or 0 when count is 0; after
   n < count, call again with the batch after its first n messages),
   WASMPOOL_BATCH_FULL (timed out, none put) or
   WASMPOOL_BATCH_CLOSED (none put). Traps on a bad handle or range, or a
   batch that is not exactly `count` messages each within the byte budget. */
WASMPOOL_IMPORT(queue_put_many)
int32_t wasmpool_queue_put_many(int32_t q, const void *ptr, int32_t len, int32_t count,
                                int64_t timeout_ms);

/* `queue_get_many(q, max_count, max_bytes, timeout_ms) -> i64`: takes the
   oldest messages of `q`, waiting up to `timeout_ms` for the first: the
   first always, then more while at most `max_count` and the batch within
   `max_bytes` bytes. Returns the batch's length (>= 4; held for
   wasmpool_queue_messages), WASMPOOL_QUEUE_EMPTY or WASMPOOL_QUEUE_DRAINED.
   Traps on a bad handle, max_count < 1 or max_bytes < 0. */
WASMPOOL_IMPORT(queue_get_many)
int64_t wasmpool_queue_get_many(int32_t q, int32_t max_count, int32_t max_bytes,
                                int64_t timeout_ms);

/* `queue_messages(ptr, len) -> i32`: copies the first min(len, length)
   bytes of the batch taken by the last wasmpool_queue_get_many to `ptr` and
   releases it; returns the bytes copied. Traps if nothing is held. */
WASMPOOL_IMPORT(queue_messages) int32_t wasmpool_queue_messages(void *ptr, int32_t len);

/* ------------------------------------------------------------------------ */
/* Imports: the shared region (docs/abi.md, "Shared memory")                 */
/* ------------------------------------------------------------------------ */
/* Offsets are byte offsets into the region (`--shared-memory SIZE`). Every
   call but wasmpool_shm_size traps (kind `abi`) on a negative, out-of-bounds
   or misaligned offset, and when there is no region. Atomic accesses are
   sequentially consistent and must be aligned to their width. */

/* `shm_size() -> i64`: the region's size in bytes, 0 without a region. */
WASMPOOL_IMPORT(shm_size) int64_t wasmpool_shm_size(void);

/* `shm_read(offset, ptr, len)`: copies region bytes at `offset` to `ptr`. */
WASMPOOL_IMPORT(shm_read) void wasmpool_shm_read(int64_t offset, void *ptr, int32_t len);

/* `shm_write(offset, ptr, len)`: copies `len` bytes at `ptr` into the
   region at `offset`. */
WASMPOOL_IMPORT(shm_write)
void wasmpool_shm_write(int64_t offset, const void *ptr, int32_t len);

/* `shm_load_i32(offset) -> i32`: atomic load. */
WASMPOOL_IMPORT(shm_load_i32) int32_t wasmpool_shm_load_i32(int64_t offset);

/* `shm_store_i32(offset, v)`: atomic store. */
WASMPOOL_IMPORT(shm_store_i32) void wasmpool_shm_store_i32(int64_t offset, int32_t value);

/* `shm_add_i32(offset, v) -> i32`: atomic wrapping add; the previous value. */
WASMPOOL_IMPORT(shm_add_i32) int32_t wasmpool_shm_add_i32(int64_t offset, int32_t value);

/* `shm_cas_i32(offset, expected, new) -> i32`: stores `new` if the value is
   `expected`; returns the previous value (== expected: it stored). */
WASMPOOL_IMPORT(shm_cas_i32)
int32_t wasmpool_shm_cas_i32(int64_t offset, int32_t expected, int32_t new_value);

/* `shm_load_i64(offset) -> i64`: atomic load. */
WASMPOOL_IMPORT(shm_load_i64) int64_t wasmpool_shm_load_i64(int64_t offset);

/* `shm_store_i64(offset, v)`: atomic store. */
WASMPOOL_IMPORT(shm_store_i64) void wasmpool_shm_store_i64(int64_t offset, int64_t value);

/* `shm_add_i64(offset, v) -> i64`: atomic wrapping add; the previous value. */
WASMPOOL_IMPORT(shm_add_i64) int64_t wasmpool_shm_add_i64(int64_t offset, int64_t value);

/* `shm_cas_i64(offset, expected, new) -> i64`: stores `new` if the value is
   `expected`; returns the previous value. */
WASMPOOL_IMPORT(shm_cas_i64)
int64_t wasmpool_shm_cas_i64(int64_t offset, int64_t expected, int64_t new_value);

/* `shm_wait_i32(offset, expected, timeout_ms) -> i32`: sleeps while the
   i32 at `offset` is `expected`, up to `timeout_ms` (negative: forever).
   Returns WASMPOOL_WAIT_WOKEN, WASMPOOL_WAIT_NOT_EQUAL or
   WASMPOOL_WAIT_TIMED_OUT. */
WASMPOOL_IMPORT(shm_wait_i32)
int32_t wasmpool_shm_wait_i32(int64_t offset, int32_t expected, int64_t timeout_ms);

/* `shm_notify(offset, count) -> i32`: wakes up to `count` waiters on
   `offset` (negative: all); returns how many woke. */
WASMPOOL_IMPORT(shm_notify) int32_t wasmpool_shm_notify(int64_t offset, int32_t count);

/* ------------------------------------------------------------------------ */
/* Imports: host functions (docs/abi.md, "Host functions")                   */
/* ------------------------------------------------------------------------ */

/* `host_call(name_ptr, name_len, in_ptr, in_len) -> i64`: calls the
   embedder's host function NAME with the input bytes, and waits for it.
   Returns the reply's length (>= 0), or, when the function returned an
   error, `-1 - length` of its error message. Either way the host holds the
   result for wasmpool_host_reply, which should come next. Traps when the
   host has no function of that name. */
WASMPOOL_IMPORT(host_call)
int64_t wasmpool_host_call(const char *name, int32_t name_len, const void *in, int32_t in_len);

/* `host_reply(ptr, len) -> i32`: copies the first min(len, length) bytes
   of the held reply (or error message) to `ptr` and releases it; returns
   the bytes copied. Traps when nothing is held. */
WASMPOOL_IMPORT(host_reply) int32_t wasmpool_host_reply(void *ptr, int32_t len);

/* ------------------------------------------------------------------------ */
/* Helpers that need no libc                                                 */
/* ------------------------------------------------------------------------ */

/* Traps the task with `message` (NUL-terminated) as its error: the C
   counterpart of a Rust panic. The host reports kind `trap` with the
   message and replaces the instance. */
__attribute__((noreturn)) static inline void wasmpool_trap(const char *message) {
    int32_t len = 0;
    while (message[len] != '\0') len++;
    wasmpool_trap_message(message, len);
    __builtin_trap();
}

#ifndef WASMPOOL_NO_LIBC

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers: input                                                            */
/* ------------------------------------------------------------------------ */
/* The CLI and the typed library calls give an ABI task one JSON value as
   its input: the text of one input line (`5`, `"text"`, `[3, 4]`,
   `{"a": 1}`), whitespace included. */

/* A copy of the whole input, NUL-terminated, to free(); its length without
   the NUL in *len (if len is not NULL). NULL if it does not fit in memory. */
static inline char *wasmpool_input_alloc(size_t *len) {
    int32_t n = wasmpool_input_len();
    char *buf = (char *)malloc((size_t)n + 1);
    if (buf == NULL) return NULL;
    n = wasmpool_input_read(buf, n);
    buf[n] = '\0';
    if (len != NULL) *len = (size_t)n;
    return buf;
}

/* Reads the input as one JSON integer that fits an int64_t (`42`, ` -7 `)
   into *out. Returns 1, or 0 when the input is anything else (a fraction,
   an exponent, a string, out of range); then *out is untouched. */
static inline int wasmpool_input_i64(int64_t *out) {
    char buf[64];
    int32_t n = wasmpool_input_len();
    if (n <= 0 || n >= (int32_t)sizeof buf) return 0;
    wasmpool_input_read(buf, n);
    buf[n] = '\0';
    const char *p = buf;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    const char *digits = *p == '-' ? p + 1 : p;
    if (*digits < '0' || *digits > '9') return 0;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno == ERANGE) return 0;
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') end++;
    if (*end != '\0') return 0;
    *out = (int64_t)v;
    return 1;
}

/* Decodes the JSON string literal `json` (quotes and escapes, surrounding
   whitespace allowed) into UTF-8 bytes: a NUL-terminated copy to free(),
   its length without the NUL in *len (if len is not NULL). NULL when the
   text is not one JSON string, or does not fit in memory. A `\u0000`
   escape decodes to a NUL byte inside the result, counted in *len. */
static inline char *wasmpool_json_string_decode(const char *json, size_t json_len, size_t *len) {
    size_t i = 0, o = 0;
    while (i < json_len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\n' || json[i] == '\r')) i++;
    if (i == json_len || json[i] != '"') return NULL;
    i++;
    /* The decoded text is never longer than the literal. */
    char *out = (char *)malloc(json_len + 1);
    if (out == NULL) return NULL;
    for (;;) {
        if (i >= json_len) goto bad;
        unsigned char c = (unsigned char)json[i++];
        if (c == '"') break;
        if (c < 0x20) goto bad;
        if (c != '\\') {
            out[o++] = (char)c;
            continue;
        }
        if (i >= json_len) goto bad;
        c = (unsigned char)json[i++];
        switch (c) {
        case '"': case '\\': case '/': out[o++] = (char)c; continue;
        case 'b': out[o++] = '\b'; continue;
        case 'f': out[o++] = '\f'; continue;
        case 'n': out[o++] = '\n'; continue;
        case 'r': out[o++] = '\r'; continue;
        case 't': out[o++] = '\t'; continue;
        case 'u': break;
        default: goto bad;
        }
        /* \uXXXX, and a second one for a surrogate pair. */
        uint32_t cp = 0;
        for (int pair = 0; pair < 2; pair++) {
            uint32_t unit = 0;
            if (json_len - i < 4) goto bad;
            for (int k = 0; k < 4; k++) {
                char h = json[i++];
                unit <<= 4;
                if (h >= '0' && h <= '9') unit |= (uint32_t)(h - '0');
                else if (h >= 'a' && h <= 'f') unit |= (uint32_t)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F') unit |= (uint32_t)(h - 'A' + 10);
                else goto bad;
            }
            if (pair == 0) {
                cp = unit;
                if (unit < 0xD800 || unit > 0xDFFF) break;
                if (unit > 0xDBFF) goto bad; /* a lone low surrogate */
                if (json_len - i < 6 || json[i] != '\\' || json[i + 1] != 'u') goto bad;
                i += 2;
            } else {
                if (unit < 0xDC00 || unit > 0xDFFF) goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (unit - 0xDC00);
            }
        }
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else if (cp < 0x800) {
            out[o++] = (char)(0xC0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[o++] = (char)(0xE0 | (cp >> 12));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (cp >> 18));
            out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    while (i < json_len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\n' || json[i] == '\r')) i++;
    if (i != json_len) goto bad;
    out[o] = '\0';
    if (len != NULL) *len = o;
    return out;
bad:
    free(out);
    return NULL;
}

/* The input as a JSON string, decoded: a NUL-terminated copy to free(),
   its length in *len (if not NULL). NULL when the input is not a JSON
   string (or does not fit in memory). */
static inline char *wasmpool_input_string(size_t *len) {
    size_t n;
    char *json = wasmpool_input_alloc(&n);
    if (json == NULL) return NULL;
    char *s = wasmpool_json_string_decode(json, n, len);
    free(json);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Helpers: output                                                           */
/* ------------------------------------------------------------------------ */

/* Appends `len` bytes to the task's output. */
static inline void wasmpool_output(const void *data, size_t len) {
    wasmpool_output_write(data, (int32_t)len);
}

/* Appends the NUL-terminated text `s` (e.g. JSON you built) to the output. */
static inline void wasmpool_output_str(const char *s) {
    wasmpool_output_write(s, (int32_t)strlen(s));
}

/* Appends `v` as a JSON number. */
static inline void wasmpool_output_i64(int64_t v) {
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    wasmpool_output_write(buf, n);
}

/* Appends the `len` bytes at `s` (UTF-8) as a JSON string literal, with the
   quotes and the escapes JSON requires. */
static inline void wasmpool_output_json_string(const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    char buf[256];
    size_t n = 0;
    buf[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        if (n > sizeof buf - 8) {
            wasmpool_output_write(buf, (int32_t)n);
            n = 0;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else if (c == '\t') {
            buf[n++] = '\\';
            buf[n++] = 't';
        } else if (c == '\r') {
            buf[n++] = '\\';
            buf[n++] = 'r';
        } else if (c < 0x20) {
            buf[n++] = '\\';
            buf[n++] = 'u';
            buf[n++] = '0';
            buf[n++] = '0';
            buf[n++] = hex[c >> 4];
            buf[n++] = hex[c & 0xF];
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    wasmpool_output_write(buf, (int32_t)n);
}

/* Ends a task with its own error: writes `message` as the output and
   returns WASMPOOL_GUEST_ERROR, for `return wasmpool_fail("...");`. Reported
   as error kind `guest` with the message. The message is appended to
   whatever the task wrote already, so fail before writing a result. */
static inline int32_t wasmpool_fail(const char *message) {
    wasmpool_output_str(message);
    return WASMPOOL_GUEST_ERROR;
}

/* Ends a task by rejecting its input: writes `message` as the output and
   returns WASMPOOL_BAD_INPUT, for `return wasmpool_reject("...");`.
   Reported as error kind `input` with the message (appended, like
   wasmpool_fail's, to anything written before). */
static inline int32_t wasmpool_reject(const char *message) {
    wasmpool_output_str(message);
    return WASMPOOL_BAD_INPUT;
}

/* ------------------------------------------------------------------------ */
/* Helpers: queues                                                           */
/* ------------------------------------------------------------------------ */

/* wasmpool_queue_open for a NUL-terminated name: a handle, or -1 if the
   pool or group declares no queue of that name. */
static inline int32_t wasmpool_queue_open_str(const char *name) {
    return wasmpool_queue_open(name, (int32_t)strlen(name));
}

/* wasmpool_queue_put for a NUL-terminated message (without the NUL). */
static inline int32_t wasmpool_queue_put_str(int32_t q, const char *message, int64_t timeout_ms) {
    return wasmpool_queue_put(q, message, (int32_t)strlen(message), timeout_ms);
}

/* Takes the oldest message of `q`, waiting up to `timeout_ms` (negative:
   forever), into a NUL-terminated buffer to free() at *message. Returns
   the message's length, or WASMPOOL_QUEUE_EMPTY, WASMPOOL_QUEUE_DRAINED, or
   WASMPOOL_QUEUE_NO_MEMORY (the message is lost); then *message is NULL.

       char *m;
       while (wasmpool_queue_get_alloc(q, WASMPOOL_FOREVER, &m) >= 0) {
           ... use m ...
           free(m);
       }                                  (ends once q is closed and drained)
*/
static inline int64_t wasmpool_queue_get_alloc(int32_t q, int64_t timeout_ms, char **message) {
    *message = NULL;
    int64_t len = wasmpool_queue_get(q, timeout_ms);
    if (len < 0) return len;
    char *buf = (char *)malloc((size_t)len + 1);
    if (buf == NULL) return WASMPOOL_QUEUE_NO_MEMORY;
    int32_t n = wasmpool_queue_message(buf, (int32_t)len);
    buf[n] = '\0';
    *message = buf;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Helpers: host functions                                                   */
/* ------------------------------------------------------------------------ */

/* Calls host function `name` with the NUL-terminated input `in` (JSON, by
   the convention of `PoolBuilder::host_fn`). Returns its reply, or its
   error message when *ok is set to 0, as a NUL-terminated string to
   free(); NULL if it does not fit in memory. */
static inline char *wasmpool_host_call_str(const char *name, const char *in, int *ok) {
    int64_t result =
        wasmpool_host_call(name, (int32_t)strlen(name), in, (int32_t)strlen(in));
    int64_t len = result >= 0 ? result : -1 - result;
    *ok = result >= 0;
    char *buf = (char *)malloc((size_t)len + 1);
    if (buf == NULL) return NULL; /* the next host_call replaces the held result */
    int32_t n = wasmpool_host_reply(buf, (int32_t)len);
    buf[n] = '\0';
    return buf;
}

#endif /* WASMPOOL_NO_LIBC */

#ifdef __cplusplus
}
#endif

#endif /* WASMPOOL_H */
