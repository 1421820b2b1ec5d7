// Package docker holds pmrun's agent image definition; pmrun --docker builds
// the base image with make-base.sh and the agents' image from the Dockerfile,
// both embedded here, when they are missing.
package docker

import (
	_ "embed"
	"os"
)

// Dockerfile is docker/Dockerfile.
//
//go:embed Dockerfile
var Dockerfile []byte

// MakeBase is docker/make-base.sh, which pmrun --docker runs when the engine
// lacks the base image.
//
//go:embed make-base.sh
var MakeBase []byte

// BaseImage is the offline base image that docker/make-base.sh makes from
// Debian packages (Python 3, numpy, cloudpickle, tqdm, venv and pip).
const BaseImage = "pmrun-base:bookworm"

// Base is the base image to use: $PMRUN_BASE_IMAGE (as for make-base.sh) or
// BaseImage.
func Base() string {
	if b := os.Getenv("PMRUN_BASE_IMAGE"); b != "" {
		return b
	}
	return BaseImage
}
