module github.com/pmrun/pmrun

go 1.26.0

require (
	github.com/hashicorp/yamux v0.1.2
	github.com/klauspost/compress v1.20.4
	go.uber.org/goleak v1.3.0
)
