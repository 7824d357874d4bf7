#!/bin/busybox sh
# Answers every connection on :9090 with a line of text.
while true; do
  echo "HTTP/1.0 200 OK\r\n\r\nstats ok" | /bin/busybox nc -l -p 9090
done
