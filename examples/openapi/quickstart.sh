#!/usr/bin/env bash
# The Terraform quickstart's flow with nothing but curl (and jq to read the answers): an
# image uploaded to eu-west, a VM group in us-east, which lacks it; the control plane has
# us-east pull the image and boots the guests. Then everything is deleted again.
#
#   eval "$(npx globalvm env)"                 # or export GLOBALVM_ENDPOINT and GLOBALVM_TOKEN
#   examples/openapi/quickstart.sh [IMAGE_FILE] # default: the guest image of npm run guest-image
set -euo pipefail
image_file=${1:-$(dirname "$0")/../../.globalvm/images/guest.qcow2}
: "${GLOBALVM_ENDPOINT:?set GLOBALVM_ENDPOINT (globalvm env prints it)}"
: "${GLOBALVM_TOKEN:?set GLOBALVM_TOKEN to a project token (globalvm env prints it)}"

api() { # METHOD PATH [JSON BODY]
  curl --fail-with-body -sS -X "$1" "$GLOBALVM_ENDPOINT$2" \
    -H "authorization: Bearer $GLOBALVM_TOKEN" -H "content-type: application/json" ${3:+-d "$3"}
}
wait_for() { # OPERATION_ID: long-polls until the operation is done; fails unless it succeeded
  local operation
  while :; do
    operation=$(api GET "/v1/operations/$1?wait=30s")
    echo "operation $1: $(jq -r '"\(.state) \(.progress.step // "") \(.progress.bytes_done)/\(.progress.bytes_total // 0) bytes"' <<<"$operation")" >&2
    [[ $(jq -r .done <<<"$operation") == true ]] && break
  done
  [[ $(jq -r .state <<<"$operation") == succeeded ]] || { jq . <<<"$operation" >&2; return 1; }
}

# 1. The image: its global ID, and a ticket to send its bytes to eu-west's manager.
image=$(api POST /v1/images '{"name":"web-openapi","origin_region":"eu-west","format":"qcow2"}')
image_id=$(jq -r .id <<<"$image")
echo "image $image_id: uploading $image_file to $(jq -r .upload.datacenter <<<"$image")" >&2
# 2. The bytes go to the manager, not the control plane. This endpoint takes the whole file
#    and chunks it there; globalvm image push (or uploadImage) sends only missing chunks.
curl --fail-with-body -sS -T "$image_file" \
  -H "authorization: Bearer $(jq -r .upload.token <<<"$image")" \
  -H "x-image-digest: sha256:$(sha256sum "$image_file" | cut -d' ' -f1)" \
  "$(jq -r .upload.url <<<"$image")/v1/uploads/$image_id/versions/$(jq -r .upload.version <<<"$image")/image?format=qcow2" >/dev/null

# 3. A VM group of 2 in us-east, which does not hold the image: one call, then wait.
group=$(api POST /v1/vm-groups "$(jq -nc --arg image "$image_id" \
  '{name:"web-openapi", image:$image, region:"us-east", size:2, machine:{vcpus:1, memory_mb:256}}')")
group_id=$(jq -r .target.id <<<"$group")
wait_for "$(jq -r .id <<<"$group")"
api GET "/v1/vm-groups/$group_id" | jq -c '{id, state, datacenter}'
api GET "/v1/vm-groups/$group_id/instances" | jq -c '[.items[] | {id, datacenter, state}]'
api GET "/v1/images/$image_id" | jq -c '{id, replicas: [.replicas[] | {datacenter, local_id, state}]}'

# 4. Clean up: the group (its guests stop), then the image (every replica goes).
wait_for "$(api DELETE "/v1/vm-groups/$group_id" | jq -r .id)"
wait_for "$(api DELETE "/v1/images/$image_id" | jq -r .id)"
echo "deleted $group_id and $image_id" >&2
