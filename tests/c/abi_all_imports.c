/*
 * The C twin of tests/fixtures/abi_all_imports.wat: calls every function
 * wasmpool.h declares, so that the compiled module imports each one with the
 * type clang gives it, and the test (host/tests/all/c_guest.rs) checks those
 * types against the WAT fixture's, import for import. The tasks do what the
 * fixture's tasks of the same names do.
 *
 *     clang --target=wasm32-wasi -O2 -mexec-model=reactor -I guest-sdk/c \
 *         tests/c/abi_all_imports.c -o abi_all_imports.wasm
 */

#include <stdlib.h>
#include <string.h>

#include "wasmpool.h"

/* Echo: output = input. */
WASMPOOL_TASK(echo) {
    size_t len;
    char *input = wasmpool_input_alloc(&len);
    if (input == NULL) return wasmpool_fail("out of memory");
    wasmpool_output(input, len);
    free(input);
    return WASMPOOL_OK;
}

/* Echo through the task I/O area: the input arrives in `buf`, written by
   the host before the call once the area is registered (the first call
   reads it there itself), and the output is handed back from it. */
static uint32_t io_area[5] = {0, 0, UINT32_MAX, 0, UINT32_MAX};
static char io_buf[4096];
WASMPOOL_TASK(io_echo) {
    wasmpool_task_io(io_area);
    io_area[0] = (uint32_t)(uintptr_t)io_buf;
    io_area[1] = sizeof io_buf;
    uint32_t n = io_area[2];
    if (n == UINT32_MAX) n = (uint32_t)wasmpool_input_read(io_buf, (int32_t)sizeof io_buf);
    io_area[3] = (uint32_t)(uintptr_t)io_buf;
    io_area[4] = n;
    return WASMPOOL_OK;
}

/* The worker count and index as two digits (`20` or `21` with 2 workers). */
WASMPOOL_TASK(worker) {
    char digits[2] = {(char)('0' + wasmpool_worker_count()), (char)('0' + wasmpool_worker_index())};
    wasmpool_output(digits, 2);
    return WASMPOOL_OK;
}

/* Queue `q` round trip: put the input, get it back, output it; then the
   queue must be empty. */
WASMPOOL_TASK(queue_roundtrip) {
    int32_t q = wasmpool_queue_open_str("q");
    if (q < 0) return wasmpool_fail("no queue q");
    if (wasmpool_queue_open_str("no such queue") != -1) wasmpool_trap("queue_open found a queue that is not there");
    size_t len;
    char *input = wasmpool_input_alloc(&len);
    if (wasmpool_queue_put(q, input, (int32_t)len, WASMPOOL_FOREVER) != WASMPOOL_QUEUE_PUT) wasmpool_trap("put");
    free(input);
    char *message;
    int64_t n = wasmpool_queue_get_alloc(q, 1000, &message);
    if (n < 0) wasmpool_trap("get");
    if (wasmpool_queue_len(q) != 0) wasmpool_trap("queue_len is not 0");
    if (wasmpool_queue_get(q, 0) != WASMPOOL_QUEUE_EMPTY) wasmpool_trap("an empty queue gave a message");
    wasmpool_output(message, (size_t)n);
    free(message);
    return WASMPOOL_OK;
}

/* Queue `q` round trip through the batch calls: the input as a batch of
   one message, taken back as a batch whose one message is output. */
WASMPOOL_TASK(queue_batch) {
    int32_t q = wasmpool_queue_open_str("q");
    if (q < 0) return wasmpool_fail("no queue q");
    size_t len;
    char *input = wasmpool_input_alloc(&len);
    if (input == NULL) return wasmpool_fail("out of memory");
    char *batch = (char *)malloc(len + 4);
    if (batch == NULL) return wasmpool_fail("out of memory");
    uint32_t n32 = (uint32_t)len;
    memcpy(batch, &n32, 4); /* wasm is little-endian */
    memcpy(batch + 4, input, len);
    free(input);
    if (wasmpool_queue_put_many(q, batch, (int32_t)(len + 4), 1, WASMPOOL_FOREVER) != 1) wasmpool_trap("put_many");
    int64_t got = wasmpool_queue_get_many(q, 8, 1 << 16, 1000);
    if (got != (int64_t)(len + 4)) wasmpool_trap("get_many");
    if (wasmpool_queue_messages(batch, (int32_t)got) != (int32_t)got) wasmpool_trap("queue_messages");
    memcpy(&n32, batch, 4);
    wasmpool_output(batch + 4, n32);
    free(batch);
    return WASMPOOL_OK;
}

/* Closes queue `q`: a get then reports it drained, a put closed. */
WASMPOOL_TASK(queue_close) {
    int32_t q = wasmpool_queue_open_str("q");
    wasmpool_queue_close(q);
    if (wasmpool_queue_get(q, WASMPOOL_FOREVER) != WASMPOOL_QUEUE_DRAINED) wasmpool_trap("get after close");
    if (wasmpool_queue_put_str(q, "1", 0) != WASMPOOL_QUEUE_CLOSED) wasmpool_trap("put after close");
    wasmpool_output_str("\"closed\"");
    return WASMPOOL_OK;
}

/* Every shm call once: returns the value at 0 (42). */
WASMPOOL_TASK(shm_all) {
    wasmpool_shm_store_i64(0, 40);
    wasmpool_shm_add_i64(0, 1);
    wasmpool_shm_cas_i64(0, 41, 42);
    wasmpool_shm_store_i32(8, 1);
    wasmpool_shm_add_i32(8, 1);
    wasmpool_shm_cas_i32(8, 2, 3);
    if (wasmpool_shm_load_i32(8) != 3) wasmpool_trap("shm_load_i32");
    if (wasmpool_shm_wait_i32(8, 7, 0) != WASMPOOL_WAIT_NOT_EQUAL) wasmpool_trap("shm_wait_i32");
    wasmpool_shm_notify(8, 1);
    char out[4] = {0};
    wasmpool_shm_write(100, "abcd", 4);
    wasmpool_shm_read(100, out, 4);
    if (out[0] != 'a' || out[3] != 'd') wasmpool_trap("shm_read");
    if (wasmpool_shm_size() < 65536) wasmpool_trap("shm_size");
    wasmpool_output_i64(wasmpool_shm_load_i64(0));
    return WASMPOOL_OK;
}

/* Host function `echo` round trip: its reply to the input is the output. */
WASMPOOL_TASK(host_echo) {
    char *input = wasmpool_input_alloc(NULL);
    int ok;
    char *reply = wasmpool_host_call_str("echo", input, &ok);
    free(input);
    if (!ok) return wasmpool_fail(reply);
    wasmpool_output_str(reply);
    free(reply);
    return WASMPOOL_OK;
}

/* Host function `fail` answers with an error: the task fails with it. */
WASMPOOL_TASK(host_fail) {
    int ok;
    char *reply = wasmpool_host_call_str("fail", "null", &ok);
    if (ok) wasmpool_trap("host function `fail` replied");
    return wasmpool_fail(reply);
}

/* Records a trap message, then traps. */
WASMPOOL_TASK(say_no) {
    wasmpool_trap("fixture says no");
}

/* The input as a JSON string, decoded and encoded again. */
WASMPOOL_TASK(string_roundtrip) {
    size_t len;
    char *s = wasmpool_input_string(&len);
    if (s == NULL) return wasmpool_reject("not a JSON string");
    wasmpool_output_json_string(s, len);
    free(s);
    return WASMPOOL_OK;
}

/* The input as an integer, plus one. */
WASMPOOL_TASK(inc) {
    int64_t n;
    if (!wasmpool_input_i64(&n)) return wasmpool_reject("not an integer");
    wasmpool_output_i64(n + 1);
    return WASMPOOL_OK;
}
