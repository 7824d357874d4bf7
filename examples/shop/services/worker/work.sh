#!/bin/busybox sh
# Polls the api every few seconds and logs what it got.
while true; do
  /bin/busybox wget -q -O - "http://api/products.json" || echo "api not reachable yet"
  echo
  /bin/busybox sleep "${INTERVAL:-5}"
done
