/*
 * A UDP echo load generator for bench/udp.ts: one socket keeps WINDOW datagrams of SIZE
 * bytes in flight to 127.0.0.1:PORT, counts the echoes for RUN_MS after WARMUP_MS, and prints
 * one line: `echoes/s N sent N received N stalls N`. With no echo for STALL_MS the window is
 * taken as lost and refilled, so losses slow a run down but never stop it.
 *
 * Before measuring it sends single datagrams until one comes back (at most 10 s; exit 1).
 *
 *   cc -O2 -o udp_load udp_load.c && ./udp_load 7007 64 64 300 1500 [20]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void set_timeout(int fd, long ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s PORT WINDOW SIZE WARMUP_MS RUN_MS [STALL_MS]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]), window = atoi(argv[2]), size = atoi(argv[3]);
  double warmup = atof(argv[4]), run = atof(argv[5]);
  long stall = argc > 6 ? atol(argv[6]) : 20;
  if (port <= 0 || port > 65535 || window < 1 || size < 0 || size > 65507 || run <= 0) {
    fprintf(stderr, "udp_load: bad arguments\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {0};
  to.sin_family = AF_INET;
  to.sin_port = htons((unsigned short)port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int bufsize = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
  if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
    fprintf(stderr, "udp_load: cannot reach port %d: %s\n", port, strerror(errno));
    return 1;
  }
  static unsigned char out[65536], in[65536];
  memset(out, 0x61, sizeof out);

  /* Wait for the server: one datagram at a time, 100 ms each, 10 s in all. */
  set_timeout(fd, 100);
  int up = 0;
  for (double deadline = now_ms() + 10e3; !up && now_ms() < deadline;) {
    send(fd, out, (size_t)size, 0);
    up = recv(fd, in, sizeof in, 0) >= 0;
    /* A refusal (nothing bound yet) comes back at once: wait a little before the next try. */
    if (!up && errno == ECONNREFUSED) usleep(10000);
  }
  if (!up) {
    fprintf(stderr, "udp_load: no echo from port %d within 10 s\n", port);
    return 1;
  }
  /* Drain what the readiness probes left behind. */
  while (recv(fd, in, sizeof in, MSG_DONTWAIT) >= 0) {
  }

  set_timeout(fd, stall);
  long inflight = 0, sent = 0, received = 0, stalls = 0, counted = -1;
  double start = now_ms(), from = 0, t = start;
  for (;;) {
    t = now_ms();
    if (counted < 0 && t - start >= warmup) {
      counted = 0;
      from = t;
    }
    if (counted >= 0 && t - from >= run) break;
    while (inflight < window) {
      if (send(fd, out, (size_t)size, 0) < 0 && errno != ECONNREFUSED) break;
      inflight++;
      sent++;
    }
    ssize_t n = recv(fd, in, sizeof in, 0);
    if (n >= 0) {
      inflight--;
      received++;
      if (counted >= 0) counted++;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      inflight = 0; /* the window was lost: refill it */
      stalls++;
    }
  }
  printf("echoes/s %.0f sent %ld received %ld stalls %ld\n", counted / ((t - from) / 1e3), sent,
         received, stalls);
  return 0;
}
