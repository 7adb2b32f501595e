/* LD_PRELOAD shim for test_textures.py: every allocation of 1 MiB or more ends (to within its 16-byte
 * rounding) at an unmapped page, so a read past its end faults at once instead of when the heap
 * happens to end there. Smaller allocations go to the real malloc. Not thread-safe beyond its one
 * mutex and meant for short test processes only: freed guarded blocks are unmapped, never reused. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#define GUARDED_FROM (1u << 20)
#define SLOTS 4096
#define PAGE 4096

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static void *(*real_realloc)(void *, size_t);
static struct { char *mapping; void *user; size_t mapped, size; } blocks[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void bind_real(void) {
  if (!real_malloc) {
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
  }
}

static int find(void *user) {
  for (int i = 0; i < SLOTS; i++)
    if (blocks[i].mapping && blocks[i].user == user) return i;
  return -1;
}

static void *guarded(size_t size) {
  size_t data = (size + 15) & ~(size_t)15, mapped = ((data + PAGE - 1) / PAGE + 1) * PAGE;
  char *mapping = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) return NULL;
  mprotect(mapping + mapped - PAGE, PAGE, PROT_NONE);
  void *user = mapping + mapped - PAGE - data;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < SLOTS; i++)
    if (!blocks[i].mapping) {
      blocks[i].mapping = mapping, blocks[i].user = user, blocks[i].mapped = mapped, blocks[i].size = size;
      break;
    }
  pthread_mutex_unlock(&lock);
  return user;
}

void *malloc(size_t size) {
  bind_real();
  return size >= GUARDED_FROM ? guarded(size) : real_malloc(size);
}

void free(void *user) {
  bind_real();
  if (!user) return;
  pthread_mutex_lock(&lock);
  int i = find(user);
  if (i >= 0) {
    munmap(blocks[i].mapping, blocks[i].mapped);
    blocks[i].mapping = NULL;
    pthread_mutex_unlock(&lock);
    return;
  }
  pthread_mutex_unlock(&lock);
  real_free(user);
}

void *realloc(void *user, size_t size) {
  bind_real();
  if (!user) return malloc(size);
  pthread_mutex_lock(&lock);
  int i = find(user);
  size_t old = i >= 0 ? blocks[i].size : 0;
  pthread_mutex_unlock(&lock);
  if (i < 0 && size < GUARDED_FROM) return real_realloc(user, size);
  if (i < 0) old = malloc_usable_size(user);
  void *moved = malloc(size);
  if (!moved) return NULL;
  memcpy(moved, user, old < size ? old : size);
  free(user);
  return moved;
}
