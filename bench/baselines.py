"""Python multiprocessing baselines for wasmpool's benchmark suite.

Run by `wasmpool-bench` as `python3 bench/baselines.py WORKLOAD`; prints one
JSON object: seconds, checksum, items, peak RSS in KiB (this process plus its
largest child). The kernels are the same as examples/kernels/src/lib.rs,
written the way the seed article uses multiprocessing.
"""

import asyncio
import json
import resource
import sys
import time
from multiprocessing import Pool, Process, Queue, Value


def primes_in_block(i):
    count = 0
    for n in range(i * 20000, (i + 1) * 20000):
        if n < 2:
            continue
        if n % 2 == 0:
            count += n == 2
            continue
        d = 3
        prime = True
        while d * d <= n:
            if n % d == 0:
                prime = False
                break
            d += 2
        count += prime
    return count


def mandelbrot_row(r):
    y0 = -1.5 + 3.0 * r / 512
    total = 0
    for c in range(512):
        x0 = -2.0 + 3.0 * c / 512
        zr = zi = 0.0
        it = 0
        while it < 256 and zr * zr + zi * zi <= 4.0:
            zr, zi = zr * zr - zi * zi + x0, 2.0 * zr * zi + y0
            it += 1
        total += it
    return total


def square(x):
    return x * x


def producer(q, n):
    for i in range(n):
        q.put(i)
    q.put(None)


def consumer(q, out):
    total = 0
    while (item := q.get()) is not None:
        total += item
    out.put(total)


def pinger(ping, pong, n):
    for i in range(n):
        ping.put(i)
        pong.get()


def ponger(ping, pong, n):
    for _ in range(n):
        pong.put(ping.get())


def locked_increments(counter, n):
    for _ in range(n):
        with counter.get_lock():
            counter.value += 1


def unlocked_increments(counter, n):
    for _ in range(n):
        counter.value += 1


def run_processes(targets):
    ps = [Process(target=t, args=a) for t, a in targets]
    for p in ps:
        p.start()
    for p in ps:
        p.join()


def main(name):
    workers = 2
    start = time.perf_counter()
    if name == "primes64/python-pool":
        with Pool(workers) as pool:
            check, items = sum(pool.map(primes_in_block, range(64))), 64
    elif name == "primes64/python-pool-chunk1":
        with Pool(workers) as pool:
            check, items = sum(pool.map(primes_in_block, range(64), chunksize=1)), 64
    elif name == "mandelbrot/python-pool":
        with Pool(workers) as pool:
            check, items = sum(pool.map(mandelbrot_row, range(512))), 512
    elif name == "mandelbrot/python-pool-chunk1":
        with Pool(workers) as pool:
            check, items = sum(pool.map(mandelbrot_row, range(512), chunksize=1)), 512
    elif name == "tiny/python-pool":
        with Pool(workers) as pool:
            check, items = sum(pool.map(square, range(1_000_000))), 1_000_000
    elif name == "tiny/python-pool-chunk1":
        with Pool(workers) as pool:
            check, items = sum(pool.map(square, range(100_000), chunksize=1)), 100_000
    elif name == "queue/python-throughput":
        n = 100_000
        q, out = Queue(), Queue()
        ps = [Process(target=producer, args=(q, n)), Process(target=consumer, args=(q, out))]
        for p in ps:
            p.start()
        check = out.get()
        for p in ps:
            p.join()
        items = n
    elif name == "queue/python-pingpong":
        n = 10_000
        ping, pong = Queue(), Queue()
        run_processes([(pinger, (ping, pong, n)), (ponger, (ping, pong, n))])
        check, items = n, n
    elif name == "counter/python-locked":
        n = 100_000
        counter = Value("i", 0)
        run_processes([(locked_increments, (counter, n))] * 2)
        check, items = counter.value, 2 * n
    elif name == "counter/python-unlocked":
        n = 1_000_000
        counter = Value("i", 0, lock=False)
        run_processes([(unlocked_increments, (counter, n))] * 2)
        check, items = counter.value, 2 * n
    elif name == "async/python-sleep":
        # asyncio's answer to the same workload: 10,000 coroutines that each
        # sleep 10 ms, gathered on one event loop.
        n = 10_000

        async def task():
            await asyncio.sleep(0.01)
            return 10

        async def run():
            return sum(await asyncio.gather(*(task() for _ in range(n))))

        check, items = asyncio.run(run()), n
    else:
        raise SystemExit(f"unknown workload {name}")
    secs = time.perf_counter() - start
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(json.dumps({"secs": secs, "check": check, "items": items, "peak_kib": peak}))


if __name__ == "__main__":
    main(sys.argv[1])
