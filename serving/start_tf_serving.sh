#!/usr/bin/env bash
# Starts the real TensorFlow Serving on a CSVAE export, with micro-batching:
#
#   serving/start_tf_serving.sh EXPORT_DIR [REST_PORT] [GRPC_PORT]
#
# serves EXPORT_DIR/savedmodel/<name>/<version>/ with the version policy of
# serving/models.config and serving/batching_parameters.txt, REST on
# REST_PORT (default 8501), gRPC on GRPC_PORT (default 8500). Runs in the
# foreground; stop it with Ctrl-C or SIGTERM (TF Serving then finishes the
# requests in flight).
#
# Needs the `tensorflow_model_server` binary (Debian/Ubuntu package
# `tensorflow-model-server` from TF Serving's own apt repository, or the
# tensorflow/serving Docker image: see docker-compose.yml). Without it the
# script says so and exits with status 127; `csvae serve --export EXPORT_DIR`
# serves the same REST API without it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export_dir="${1:-}"
rest_port="${2:-8501}"
grpc_port="${3:-8500}"

if [[ -z "$export_dir" || "$export_dir" == -h || "$export_dir" == --help ]]; then
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
fi
if ! command -v tensorflow_model_server >/dev/null 2>&1; then
  cat >&2 <<MSG
start_tf_serving.sh: tensorflow_model_server is not installed (not on PATH).
  Install it from TensorFlow Serving's apt repository (package tensorflow-model-server),
  or run the Docker image:  EXPORT_DIR=$export_dir docker compose -f $here/docker-compose.yml up
  or serve the same REST API without it:  csvae serve --export $export_dir
MSG
  exit 127
fi
if [[ ! -d "$export_dir/savedmodel" ]]; then
  echo "start_tf_serving.sh: $export_dir has no savedmodel/ (make one with: csvae export --run RUN --out $export_dir)" >&2
  exit 2
fi
export_dir="$(cd "$export_dir" && pwd)"
# The model is the directory under savedmodel/ (csvae unless exported with --name).
name="$(find "$export_dir/savedmodel" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | head -n 1)"
if [[ -z "$name" ]]; then
  echo "start_tf_serving.sh: $export_dir/savedmodel holds no model directory" >&2
  exit 2
fi

# serving/models.config with this machine's path and the model's name.
config="$(mktemp "${TMPDIR:-/tmp}/csvae-models.XXXXXX.config")"
trap 'rm -f "$config"' EXIT
sed -e "s#base_path: \"/models/csvae\"#base_path: \"$export_dir/savedmodel/$name\"#" \
    -e "s#name: \"csvae\"#name: \"$name\"#" "$here/models.config" > "$config"

echo "Serving $name from $export_dir/savedmodel/$name: REST http://127.0.0.1:$rest_port/v1/models/$name, gRPC :$grpc_port" >&2
# Not exec: the trap removes the generated config when the server stops.
tensorflow_model_server \
  --port="$grpc_port" \
  --rest_api_port="$rest_port" \
  --model_config_file="$config" \
  --enable_batching \
  --batching_parameters_file="$here/batching_parameters.txt" \
  --tensorflow_intra_op_parallelism=1 \
  --tensorflow_inter_op_parallelism=2 &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"; rm -f "$config"' INT TERM
wait "$server"
