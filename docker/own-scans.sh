#!/usr/bin/env bash
# Own scans with ADC alone, in the image: a synthetic population's ADC maps and its atlas (imported) go through
# `sparseg predict --atlas` in the image, under the organisers' flags with a read-only root, and its masks must
# equal, voxel for voxel, those `sparseg predict --atlas` writes on the host (registration is deterministic).
#
#   docker/own-scans.sh TAG FOLDER
set -euo pipefail
tag=$1
folder=$2
source "$(dirname "$0")/common.sh"
fail() { echo "own-scans.sh: FAILED: $1" >&2; exit 1; }
sparseg=.venv/bin/sparseg
rm -rf "$folder"
$sparseg synth --out "$folder/cohort" --cases 2 --seed 4 --population --size 96 --depth 16 > /dev/null
truth=$folder/cohort/generating_atlas
$sparseg atlas import --mean "$truth/mean.mha" --sd "$truth/sd.mha" --mask "$truth/mask.mha" --out "$folder/atlas" \
    --description "the synthetic population's generating atlas" > /dev/null
$sparseg predict --data "$folder/cohort" --atlas "$folder/atlas" --out "$folder/host" --device cpu 2> /dev/null
mkdir -p "$folder/image"
chmod 777 "$folder/image"
docker run --rm "${ORGANISER_FLAGS[@]}" "${READ_ONLY_FLAGS[@]}" -v "$(realpath "$folder/cohort")":/data:ro \
    -v "$(realpath "$folder/atlas")":/atlas:ro -v "$(realpath "$folder/image")":/out --entrypoint python3 "$tag" \
    -m sparseg predict --data /data --atlas /atlas --out /out --report --device cpu \
    || fail "sparseg predict --atlas failed in the image"
for mask in "$folder"/host/*_lesion.mha; do
    $sparseg compare "$folder/image/$(basename "$mask")" "$mask" || fail "$(basename "$mask") differs from the host's"
done
[ -f "$folder/image/report.html" ] || fail "no QA page"
echo "own-scans.sh: ADC alone with an atlas gives the host's masks in the image"
