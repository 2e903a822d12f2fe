/*
 * A plain UDP echo loop, the baseline of bench/udp.ts: one blocking recvfrom()/sendto() per
 * datagram on 127.0.0.1:PORT (or HOST:PORT), a 65,536-byte buffer, no policy at all. Runs
 * until killed.
 *
 *   cc -O2 -o udp_echo_loop udp_echo_loop.c && ./udp_echo_loop 7007 [127.0.0.1]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [HOST]\n", argv[0]);
    return 2;
  }
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[1]));
  if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &addr.sin_addr) != 1) {
    fprintf(stderr, "udp_echo_loop: cannot parse host %s\n", argv[2]);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    fprintf(stderr, "udp_echo_loop: cannot bind port %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  static unsigned char buf[65536];
  for (;;) {
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "udp_echo_loop: recvfrom: %s\n", strerror(errno));
      return 1;
    }
    sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fromlen);
  }
}
