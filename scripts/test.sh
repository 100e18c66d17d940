#!/usr/bin/env bash
# The project's test command: starts the services the tests need, then checks formatting,
# lints and runs every test of the workspace. `.ci/run` calls this and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    if [ -z "${TRAFFIK_APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null
        export TRAFFIK_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Waits up to 10 s for a TCP port on 127.0.0.1 to accept connections.
wait_port() {
    local port=$1
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        return
    fi
    command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server redis-tools; }
    log "starting redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/traffik-test.log
    wait_port 6379 || { log "redis did not start"; exit 1; }
}

# A 3-primary Redis Cluster on 127.0.0.1:7000-7002 for the cluster tests (no replicas,
# no persistence). Reuses a healthy cluster already running there.
ensure_redis_cluster() {
    if [ "$(redis-cli -p 7000 cluster info 2>/dev/null | tr -d '\r' | grep cluster_state)" = "cluster_state:ok" ]; then
        return
    fi
    command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server redis-tools; }
    log "starting a redis cluster on 127.0.0.1:7000-7002"
    local base=/var/lib/redis/traffik-cluster
    for port in 7000 7001 7002; do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
        rm -rf "${base:?}/$port"
        mkdir -p "$base/$port"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
            --cluster-config-file "$base/$port/nodes.conf" --cluster-node-timeout 5000 \
            --save "" --appendonly no --dir "$base/$port" --logfile "$base/$port/redis.log"
        wait_port "$port" || { log "redis on $port did not start"; exit 1; }
    done
    redis-cli --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002 \
        --cluster-replicas 0 --cluster-yes >/dev/null
    for _ in $(seq 1 100); do
        if [ "$(redis-cli -p 7000 cluster info | tr -d '\r' | grep cluster_state)" = "cluster_state:ok" ]; then
            return
        fi
        sleep 0.1
    done
    log "redis cluster did not become ready"
    exit 1
}

ensure_memcached() {
    if wait_port_once 11211; then
        return
    fi
    command -v memcached >/dev/null || { log "installing memcached"; apt_install memcached; }
    log "starting memcached on 127.0.0.1:11211"
    memcached -d -u root -l 127.0.0.1 -p 11211 -m 256
    wait_port 11211 || { log "memcached did not start"; exit 1; }
}

wait_port_once() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_redis
ensure_redis_cluster
ensure_memcached
export TRAFFIK_REDIS_URL="${TRAFFIK_REDIS_URL:-redis://127.0.0.1:6379/0}"
export TRAFFIK_REDIS_CLUSTER_URLS="${TRAFFIK_REDIS_CLUSTER_URLS:-redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002}"
export TRAFFIK_MEMCACHED_URL="${TRAFFIK_MEMCACHED_URL:-127.0.0.1:11211}"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
log "cargo test"
cargo test --workspace --all-features
