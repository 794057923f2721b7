#!/usr/bin/env bash
# A throwaway Orthanc DICOM server with DICOMweb, for tests and for trying the clinical
# path on one machine:
#     bash scripts/orthanc.sh DIR [HTTP_PORT]      # default port 8042; Ctrl-C stops it
# DIR holds its configuration and storage (created; delete it to start empty). DICOMweb is served at
# http://127.0.0.1:HTTP_PORT/dicom-web (QIDO-RS, WADO-RS, STOW-RS): pass that URL to
# `monaiseg label serve --studies`. No DICOM (DIMSE) port. Orthanc listens on all addresses and answers
# other hosts with HTTP 401 (RemoteAccessAllowed false).
# Needs Debian's packages `orthanc` and `orthanc-dicomweb` (`apt-get install orthanc orthanc-dicomweb`).
set -euo pipefail
dir=${1:?usage: scripts/orthanc.sh DIR [HTTP_PORT]}
port=${2:-8042}
plugin=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
command -v Orthanc >/dev/null || { echo "Orthanc is not installed: apt-get install orthanc orthanc-dicomweb" >&2; exit 2; }
[ -f "$plugin" ] || { echo "$plugin is missing: apt-get install orthanc-dicomweb" >&2; exit 2; }
mkdir -p "$dir/storage"
dir=$(cd "$dir" && pwd)
cat > "$dir/orthanc.json" <<JSON
{
  "Name": "monaiseg-orthanc",
  "StorageDirectory": "$dir/storage",
  "IndexDirectory": "$dir/storage",
  "HttpPort": $port,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": false,
  "HttpsCACertificates": "",
  "Plugins": ["$plugin"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "Ssl": false}
}
JSON
echo "Orthanc: http://127.0.0.1:$port  DICOMweb: http://127.0.0.1:$port/dicom-web  storage: $dir/storage" >&2
exec Orthanc "$dir/orthanc.json"
