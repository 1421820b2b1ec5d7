// Package docker holds pmrun's agent image definition; pmrun --docker builds
// the image from the Dockerfile embedded here when it is missing.
package docker

import _ "embed"

// Dockerfile is docker/Dockerfile.
//
//go:embed Dockerfile
var Dockerfile []byte

// BaseImage is the offline base image that docker/make-base.sh makes from
// Debian packages (Python 3, numpy, cloudpickle, tqdm, venv and pip).
const BaseImage = "pmrun-base:bookworm"
