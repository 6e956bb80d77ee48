#!/usr/bin/env bash
# Turns a legacy tail.conf into the cargo features of a gala-gopher build
# that leaves out what the file names (`make build TAIL=tail.conf`, and
# `TAIL=tail.conf make rpm`; config/tail.conf is a sample, docs/install.md).
#
#   scripts/tail-features.sh TAIL_CONF
#       prints the cargo arguments: --no-default-features [--features a,b,..]
#   scripts/tail-features.sh --list TAIL_CONF
#       prints only the features kept, comma-separated (empty when none)
#   scripts/tail-features.sh --config FEATURES CONFIG
#       prints the TOML config CONFIG with every [[probes]] entry of a
#       built-in probe that FEATURES (a --list output) leaves out switched
#       off, so that a trimmed build's own config passes check-config
#
# tail.conf, as the legacy build read it: lines NAME="a|b" (quotes optional,
# spaces ignored), each naming what to LEAVE OUT of the build, separated by
# `|`; empty entries, the legacy placeholder NULL and the legacy example
# probe (which the legacy build always left out; no such probe is built
# here) name nothing. Blank lines
# and lines starting with # are comments (and a leading `export ` is allowed).
#   PROBES         built-in probes to leave out
#   EXTEND_PROBES  the same (the legacy eBPF probes were extend probes, so
#                  legacy files may name tcp_link here; extend probes proper
#                  are programs of their own, not built with the agent)
#   FEATURES       other parts to leave out: kafka
# A probe may be written as the legacy build wrote it: with a directory and
# the .probe suffix (src/probes/system_tcp.probe). Any other setting or name
# is an error that names it.
#
# The names come from [features] of gopher/Cargo.toml: `probe-<name>` for
# each built-in probe, and every other feature but `default` (kafka).
set -euo pipefail

usage() {
    echo "usage: $0 [--list] TAIL_CONF | --config FEATURES CONFIG" >&2
    exit 2
}

manifest=$(dirname "$0")/../gopher/Cargo.toml
# The features of gala-gopher, in file order, `default` left out.
all=$(awk '
    /^\[/ { in_features = ($0 == "[features]"); next }
    in_features && /^[A-Za-z0-9_-]+ *=/ { sub(/ *=.*/, ""); if ($0 != "default") print }
' "$manifest")
probes=$(printf '%s\n' "$all" | sed -n 's/^probe-//p')
others=$(printf '%s\n' "$all" | grep -v '^probe-' || true)
if [ -z "$probes" ]; then
    echo "tail-features: no probe-<name> feature in $manifest" >&2
    exit 1
fi

# `--config FEATURES CONFIG`: switch off the left-out probes of CONFIG.
if [ "${1:-}" = --config ]; then
    [ $# -eq 3 ] || usage
    left_out=""
    for p in $probes; do
        case ",$2," in
            *",probe-$p,"*) ;;
            *) left_out="$left_out $p" ;;
        esac
    done
    # Each [[probes]] entry is held until its end, so that `switch` may come
    # before or after `name`.
    awk -v left_out="$left_out" '
        BEGIN { n = split(left_out, l, " "); for (i = 1; i <= n; i++) out[l[i]] = 1 }
        function flush(   i) {
            for (i = 1; i <= held; i++) {
                if (name in out && buf[i] ~ /^[ \t]*switch[ \t]*=/) {
                    sub(/=[ \t]*"[a-z]*"/, "= \"off\"", buf[i])
                    buf[i] = buf[i] "  # left out of this build (tail.conf)"
                }
                print buf[i]
            }
            held = 0; name = ""
        }
        /^[ \t]*\[/ { flush(); in_probe = ($0 ~ /^[ \t]*\[\[[ \t]*probes[ \t]*\]\]/) }
        in_probe {
            buf[++held] = $0
            if ($0 ~ /^[ \t]*name[ \t]*=/) { v = $0; sub(/^[^"]*"/, "", v); sub(/".*/, "", v); name = v }
            next
        }
        { print }
        END { flush() }
    ' "$3"
    exit 0
fi

list_only=0
if [ "${1:-}" = --list ]; then
    list_only=1
    shift
fi
[ $# -eq 1 ] || usage
conf=$1
if [ ! -r "$conf" ]; then
    echo "tail-features: cannot read $conf" >&2
    exit 2
fi

left_probes=" "
left_others=" "
bad=()
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    # The legacy build removed every space of the file before reading it.
    line=${line//[[:space:]]/}
    case "$line" in "" | "#"*) continue ;; esac
    line=${line#export}
    if [[ ! "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
        bad+=("$conf:$lineno: expected NAME=\"a|b\", got \`$line\`")
        continue
    fi
    key=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    value=${value#\"}
    value=${value%\"}
    value=${value#\'}
    value=${value%\'}
    case "$key" in
        PROBES | EXTEND_PROBES | FEATURES) ;;
        *)
            bad+=("$conf:$lineno: unknown setting \`$key\` (expected PROBES, EXTEND_PROBES or FEATURES)")
            continue
            ;;
    esac
    IFS='|' read -r -a entries <<<"$value"
    for e in "${entries[@]}"; do
        case "$e" in "" | NULL | example | example.probe) continue ;; esac
        if [ "$key" = FEATURES ]; then
            if printf '%s\n' "$others" | grep -qxF -- "$e"; then
                left_others="$left_others$e "
            else
                bad+=("$conf:$lineno: FEATURES: unknown feature \`$e\` (known: ${others//$'\n'/ })")
            fi
        else
            name=${e##*/}
            name=${name%.probe}
            if printf '%s\n' "$probes" | grep -qxF -- "$name"; then
                left_probes="$left_probes$name "
            else
                bad+=("$conf:$lineno: $key: unknown probe \`$e\` (built-in probes: ${probes//$'\n'/ })")
            fi
        fi
    done
done <"$conf"

if [ ${#bad[@]} -gt 0 ]; then
    printf 'tail-features: %s\n' "${bad[@]}" >&2
    exit 2
fi

kept=()
for f in $all; do
    case "$f" in
        probe-*) [[ "$left_probes" == *" ${f#probe-} "* ]] && continue ;;
        *) [[ "$left_others" == *" $f "* ]] && continue ;;
    esac
    kept+=("$f")
done
list=$(IFS=,; echo "${kept[*]}")
if [ $list_only = 1 ]; then
    echo "$list"
elif [ -n "$list" ]; then
    echo "--no-default-features --features $list"
else
    echo "--no-default-features"
fi
