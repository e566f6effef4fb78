/*
 * Tasks written in C: a JSON task with its own errors (`collatz`), a text
 * task (`shout`), and a numeric export (`collatz_steps`).
 *
 *     clang --target=wasm32-wasi -O2 -mexec-model=reactor -I guest-sdk/c \
 *         examples/c/tasks.c -o tasks.wasm
 *     seq 1 5 | wasmpool map tasks.wasm --task collatz --values
 *     echo '"hello, world"' | wasmpool map tasks.wasm --task shout --values
 *     seq 1 5 | wasmpool map tasks.wasm --task collatz_steps --values
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "wasmpool.h"

/* Follows n to 1 (n -> n / 2 when even, 3n + 1 when odd): the number of
   steps and the highest value passed, or 0 when 3n + 1 overflows. */
static int collatz(int64_t n, int64_t *steps, int64_t *peak) {
    *steps = 0;
    *peak = n;
    while (n != 1) {
        if (n % 2 == 0) {
            n /= 2;
        } else if (__builtin_mul_overflow(n, 3, &n) || __builtin_add_overflow(n, 1, &n)) {
            return 0;
        }
        if (n > *peak) *peak = n;
        ++*steps;
    }
    return 1;
}

/* `collatz`: an integer n >= 1 -> {"n": n, "steps": S, "peak": P}.
   A non-integer input is rejected (kind `input`), n < 1 fails (kind
   `guest`), and an overflow traps with a message (kind `trap`). */
WASMPOOL_TASK(collatz) {
    int64_t n, steps, peak;
    if (!wasmpool_input_i64(&n)) {
        return wasmpool_reject("collatz takes one integer, such as 27");
    }
    if (n < 1) {
        return wasmpool_fail("collatz: n must be at least 1");
    }
    if (!collatz(n, &steps, &peak)) {
        wasmpool_trap("collatz: 3n + 1 overflows a 64-bit integer");
    }
    char json[96];
    snprintf(json, sizeof json, "{\"n\":%lld,\"steps\":%lld,\"peak\":%lld}",
             (long long)n, (long long)steps, (long long)peak);
    wasmpool_output_str(json);
    return WASMPOOL_OK;
}

/* `shout`: a JSON string -> the same string in ASCII upper case. */
WASMPOOL_TASK(shout) {
    size_t len;
    char *text = wasmpool_input_string(&len);
    if (text == NULL) {
        return wasmpool_reject("shout takes one JSON string, such as \"hello\"");
    }
    for (size_t i = 0; i < len; i++) {
        text[i] = (char)toupper((unsigned char)text[i]);
    }
    wasmpool_output_json_string(text, len);
    free(text);
    return WASMPOOL_OK;
}

/* `collatz_steps`: a numeric export, `(i64) -> i64`, that needs none of the
   ABI: the steps from n to 1, or -1 when n < 1 or 3n + 1 overflows. */
WASMPOOL_EXPORT(collatz_steps) int64_t collatz_steps(int64_t n) {
    int64_t steps, peak;
    if (n < 1 || !collatz(n, &steps, &peak)) return -1;
    return steps;
}
