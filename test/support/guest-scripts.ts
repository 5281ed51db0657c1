// Startup-scripts of the networking tests' guests (busybox: sh, httpd, nc, wget for metadata).
// Guests fetch over TCP with nc: the guest's static busybox wget segfaulted fetching from another
// guest here, while it reads the metadata fine.

/** A `web` guest: serves "hello-from-web" over HTTP on port 80, then says so (net/serving). */
export const SERVE = [
  "mkdir -p /www && echo hello-from-web >/www/index.html",
  "httpd -h /www -p 80 && guest-attribute net/serving yes",
].join("\n");

/**
 * A `client` guest: reads the peer's address from the metadata value `web` (net/peer), then
 * fetches from it for up to 30 s (net/tcp = ok or failed).
 */
export const FETCH_WEB = [
  'web="$(wget -q -O - --header "Metadata-Flavor: Google" http://169.254.169.254/computeMetadata/v1/instance/attributes/web)"',
  'guest-attribute net/peer "$web"',
  "ok=failed",
  "for i in $(seq 1 30); do",
  `  if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "$web" 80 | grep -q hello-from-web; then ok=ok; break; fi`,
  "  sleep 1",
  "done",
  "guest-attribute net/tcp $ok",
].join("\n");

/** A guest behind an endpoint: serves its own instance name over HTTP on port 80. */
export const SERVE_NAME = [
  "mkdir -p /www",
  'wget -q -O /www/index.html --header "Metadata-Flavor: Google" http://169.254.169.254/computeMetadata/v1/instance/name',
  "httpd -h /www -p 80",
].join("\n");

/**
 * Resolves names through the guest's own resolver once `first` resolves (for up to 2 min), and
 * publishes each as the guest attribute dns/<key>: the address, or "unresolved". busybox ping
 * prints the address it resolved, whether or not anything answers it.
 */
export function resolveNames(first: string, names: Record<string, string>): string {
  return [
    `resolve() { ping -c 1 -W 1 "$1" 2>/dev/null | sed -n 's/^PING [^ ]* (\\([0-9.]*\\)).*/\\1/p'; }`,
    "(",
    `  for i in $(seq 1 120); do [ -n "$(resolve ${first})" ] && break; sleep 1; done`,
    ...Object.entries(names).map(
      ([key, name]) => `  r="$(resolve ${name})"; guest-attribute dns/${key} "\${r:-unresolved}"`,
    ),
    ") &",
  ].join("\n");
}
