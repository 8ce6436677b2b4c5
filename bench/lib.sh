# Shared by the bench scripts (sourced): a scratch folder, clean-up of what they start,
# and nginx instances (origin or proxy) with the same settings as proxy-bench.sh's.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run=$(mktemp -d)
mkdir -p "$run/tmp" "$run/www"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.3; rm -rf "$run"' EXIT

# nginx_conf NAME LISTEN HTTP_EXTRA SERVER_BODY: writes $run/NAME.conf (one worker, in the
# foreground, keep-alive without limit).
nginx_conf() {
  cat > "$run/$1.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $run/$1.pid; error_log $run/$1.err warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $run/tmp; proxy_temp_path $run/tmp; fastcgi_temp_path $run/tmp;
  uwsgi_temp_path $run/tmp; scgi_temp_path $run/tmp;
  access_log off; keepalive_requests 100000000; keepalive_timeout 300s; default_type text/plain;
  $3
  server { listen 127.0.0.1:$2; $4 }
}
CONF
}

# start_origin [CPU]: the origin on 18080: 1 KiB from memory at /1k and /, 16 KiB at /16k.
start_origin() {
  head -c 16384 /dev/zero | tr '\0' a > "$run/www/16k"
  local body
  body=$(head -c 1023 /dev/zero | tr '\0' a)
  nginx_conf origin 18080 "" "root $run/www; location = /16k { } location / { return 200 \"$body\\n\"; }"
  taskset -c "${1:-1}" nginx -c "$run/origin.conf" & pids+=($!)
}

# nginx_proxy NAME LISTEN UPSTREAM [CPU]: nginx proxying to UPSTREAM with keep-alive.
nginx_proxy() {
  nginx_conf "$1" "$2" "upstream up { server $3; keepalive 256; }" \
    "location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
}

# wait_ok URL: until URL answers 2xx (10 s at most).
wait_ok() {
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  cat "$run"/*.err >&2 2>/dev/null || true
  return 1
}
