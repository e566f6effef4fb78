/*
 * wasmpool.h without a C library (WASMPOOL_NO_LIBC): only the raw imports,
 * the marker, the constants and wasmpool_trap.
 *
 *     clang --target=wasm32-unknown-unknown -O2 -nostdlib -Wl,--no-entry \
 *         -D WASMPOOL_NO_LIBC -I guest-sdk/c tests/c/freestanding.c -o freestanding.wasm
 */

#include "wasmpool.h"

static char buf[256];

/* The input reversed, byte by byte (an input of up to 256 bytes); a longer
   one traps with a message. */
WASMPOOL_TASK(reverse) {
    int32_t n = wasmpool_input_len();
    if (n > (int32_t)sizeof buf) wasmpool_trap("reverse: the input is longer than 256 bytes");
    wasmpool_input_read(buf, n);
    for (int32_t i = 0, j = n - 1; i < j; i++, j--) {
        char c = buf[i];
        buf[i] = buf[j];
        buf[j] = c;
    }
    wasmpool_output_write(buf, n);
    return WASMPOOL_OK;
}
