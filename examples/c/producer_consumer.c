/*
 * A WASI command in C sharing a queue: copy 0 puts the numbers 1..COUNT on
 * queue `items` and closes it; every other copy takes numbers until the
 * queue is closed and drained, then prints how many it took and their sum.
 *
 *     clang --target=wasm32-wasi -O2 -I guest-sdk/c \
 *         examples/c/producer_consumer.c -o producer_consumer.wasm
 *     wasmpool run producer_consumer.wasm -n 3 --queue items:4 -- 100
 *
 * COUNT is the first argument (default 10). The consumers' sums add up to
 * COUNT * (COUNT + 1) / 2: every number is taken exactly once.
 */

#include <stdio.h>
#include <stdlib.h>

#include "wasmpool.h"

int main(int argc, char **argv) {
    int32_t me = wasmpool_worker_index();
    long count = 10;
    if (argc > 1) {
        char *end;
        count = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || count < 0) {
            fprintf(stderr, "copy %d: COUNT must be a whole number, not `%s`\n", (int)me, argv[1]);
            return 2;
        }
    }
    int32_t items = wasmpool_queue_open_str("items");
    if (items < 0) {
        fprintf(stderr, "copy %d: no queue `items`: run with --queue items\n", (int)me);
        return 2;
    }
    if (me == 0) {
        char message[24];
        for (long i = 1; i <= count; i++) {
            snprintf(message, sizeof message, "%ld", i);
            if (wasmpool_queue_put_str(items, message, WASMPOOL_FOREVER) != WASMPOOL_QUEUE_PUT) {
                fprintf(stderr, "copy 0: queue `items` was closed by someone else\n");
                return 1;
            }
        }
        /* Closing, not a sentinel: each consumer's loop ends once the queue
           is closed and drained, however many consumers there are. */
        wasmpool_queue_close(items);
        printf("copy 0: put %ld items\n", count);
        return 0;
    }
    long taken = 0;
    long long sum = 0;
    char *message;
    int64_t len;
    while ((len = wasmpool_queue_get_alloc(items, WASMPOOL_FOREVER, &message)) >= 0) {
        sum += strtoll(message, NULL, 10);
        taken++;
        free(message);
    }
    if (len != WASMPOOL_QUEUE_DRAINED) {
        fprintf(stderr, "copy %d: a message did not fit in memory\n", (int)me);
        return 1;
    }
    printf("copy %d: took %ld items, sum %lld\n", (int)me, taken, sum);
    return 0;
}
