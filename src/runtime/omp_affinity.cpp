// Binds an inference thread and its OpenMP team to cores: team thread t to cpus[(first + t) % n],
// the CPUs as device.rs's allowed_cpus lists them (the ONNX sessions' pool threads follow the same
// list). libgomp keeps a pool of team threads per calling thread and reuses them in order, so
// binding them once, in a region of the team's size, lasts.
//
// Why: a lone request's two-thread pass after idle time ran 2.3x slower than back to back (19.7 vs
// 8.4 ms, BENCHMARKS.md): the pool thread, asleep for long, is woken onto the calling thread's own
// core and the two share it until the scheduler moves one. Bound, each has a core of its own.
#include <omp.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstddef>

// Returns the number of team threads bound (threads when all were).
extern "C" int food_api_bind_omp_team(const size_t* cpus, size_t n, int first, int threads) {
  if (n == 0) return 0;
  std::atomic<int> bound{0};
#pragma omp parallel num_threads(threads)
  {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[(first + omp_get_thread_num()) % n], &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0) bound.fetch_add(1);
  }
  return bound.load();
}
