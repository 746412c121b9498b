# Starts ChromeDriver on a free loopback port for the browser tests (installing Chromium and ChromeDriver from
# Debian's packages when they are missing) and exports CARAVAN_CHROMEDRIVER_URL. Source this file, call
# caravan_chromium_install and caravan_chromium_start; caravan_chromium_stop, also run when the shell exits, stops
# the driver and every browser it started, and removes their files.

caravan_chromium_install() {
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        return 0
    fi
    echo "Chromium or ChromeDriver is not installed; installing chromium and chromium-driver from Debian's packages..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        echo "error: Chromium and ChromeDriver could not be installed" >&2
        return 1
    fi
    echo "Installed $(chromium --version 2>/dev/null) and $(chromedriver --version | cut -d' ' -f1-2)" >&2
}

caravan_chromium_start() {
    if [ -n "${CARAVAN_CHROMEDRIVER_PID:-}" ] && kill -0 "$CARAVAN_CHROMEDRIVER_PID" 2>/dev/null; then
        return 0
    fi
    command -v chromedriver >/dev/null 2>&1 \
        || { echo "error: chromedriver is not installed (caravan_chromium_install installs it)" >&2; return 1; }

    # Browser profiles go to a directory of our own (ChromeDriver makes them under TMPDIR), so that stopping leaves
    # nothing behind even when a browser was killed before it could clean up.
    CARAVAN_CHROMIUM_DIR=$(mktemp -d /tmp/caravan-chromium.XXXXXX)
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    # A process group of its own (job control, just for this line): the browsers ChromeDriver starts join it,
    # so that one signal stops them all, even the ones a killed driver left behind.
    local monitor=0
    case $- in *m*) monitor=1 ;; esac
    set -m
    TMPDIR=$CARAVAN_CHROMIUM_DIR chromedriver --port="$port" </dev/null >"$CARAVAN_CHROMIUM_DIR/chromedriver.log" 2>&1 &
    CARAVAN_CHROMEDRIVER_PID=$!
    [ $monitor -eq 1 ] || set +m

    local url="http://127.0.0.1:$port" attempt
    for attempt in $(seq 1 100); do
        if python3 -c 'import json, sys, urllib.request
sys.exit(0 if json.load(urllib.request.urlopen(sys.argv[1], timeout=2))["value"]["ready"] else 1)' \
            "$url/status" 2>/dev/null; then
            export CARAVAN_CHROMEDRIVER_URL=$url
            caravan_chromium_trap_exit
            echo "ChromeDriver $(chromedriver --version | cut -d' ' -f2) is running on $url (log in $CARAVAN_CHROMIUM_DIR)" >&2
            return 0
        fi
        kill -0 "$CARAVAN_CHROMEDRIVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: ChromeDriver did not become ready on $url; it wrote:" >&2
    cat "$CARAVAN_CHROMIUM_DIR/chromedriver.log" >&2
    caravan_chromium_stop
    return 1
}

# Adds caravan_chromium_stop to the shell's EXIT trap, after whatever it already runs (caravan_postgres_stop sets one).
caravan_chromium_trap_exit() {
    local current
    current=$(trap -p EXIT)
    case $current in *caravan_chromium_stop*) return 0 ;; esac
    if [ -n "$current" ]; then
        eval "set -- $current"  # trap -- 'COMMAND' EXIT
        trap "$3; caravan_chromium_stop" EXIT
    else
        trap caravan_chromium_stop EXIT
    fi
}

caravan_chromium_stop() {
    if [ -n "${CARAVAN_CHROMEDRIVER_PID:-}" ]; then
        local group=$CARAVAN_CHROMEDRIVER_PID attempt
        kill -TERM -- "-$group" 2>/dev/null || true
        for attempt in $(seq 1 50); do
            kill -0 "$group" 2>/dev/null || break
            sleep 0.1
        done
        # Whatever did not stop in 5 s, and any browser the driver's exit left behind.
        kill -KILL -- "-$group" 2>/dev/null || true
        wait "$group" 2>/dev/null || true
        unset CARAVAN_CHROMEDRIVER_PID CARAVAN_CHROMEDRIVER_URL
    fi
    if [ -n "${CARAVAN_CHROMIUM_DIR:-}" ] && [ -d "$CARAVAN_CHROMIUM_DIR" ]; then
        rm -rf "$CARAVAN_CHROMIUM_DIR"
        unset CARAVAN_CHROMIUM_DIR
    fi
}
