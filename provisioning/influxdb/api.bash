# Sourced by the scripts beside it: InfluxDB's HTTP API through curl, with the
# token in a header file (never on a command line) and JSON bodies from files.
# Needs curl and jq; `work` must name a private scratch directory (umask 077).
# An https `url` is verified against CURL_CA_BUNDLE when it is set (the
# store's CA: nixos/influxdb.nix, the local stack's --store-tls).

# api_token TOKEN_FILE: the token every later `api` call sends.
api_token() {
  printf 'Authorization: Token %s\n' "$(< "$1")" > "$work/auth"
}

# api METHOD PATH [BODY-FILE]: the response body on stdout; fails (naming the
# request and the answer) on HTTP >= 300.
api() {
  local code auth=()
  [ -s "$work/auth" ] && auth=(-H @"$work/auth")
  code=$(curl -sS -o "$work/response" -w '%{http_code}' "${auth[@]}" \
    -H 'Content-Type: application/json' -X "$1" "$url$2" ${3:+--data-binary @"$3"})
  if [ "$code" -ge 300 ]; then
    echo "${0##*/}: $1 $2 answered HTTP $code: $(cat "$work/response")" >&2
    return 1
  fi
  cat "$work/response"
}

# uri TEXT: TEXT escaped for a query string.
uri() {
  jq -rn --arg t "$1" '$t | @uri'
}
