package tlsx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// The files Generate writes in its directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
	CertFile  = "cert.pem"
	KeyFile   = "key.pem"
)

// Generate makes a new CA (ECDSA P-256) in dir and one certificate it
// signs, valid for validFor, for every node of a cluster to share (or sign
// more with the CA's key: any certificate it signs is a member). It refuses
// to overwrite files already there. The keys are written mode 0600.
func Generate(dir string, validFor time.Duration) (Files, error) {
	f := Files{Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, KeyFile), CA: filepath.Join(dir, CAFile)}
	caKeyPath := filepath.Join(dir, CAKeyFile)
	for _, p := range []string{f.Cert, f.Key, f.CA, caKeyPath} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return Files{}, fmt.Errorf("tls: %s exists: not overwriting it", p)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("tls: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "pmrun cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "pmrun node"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return Files{}, err
	}
	for _, w := range []struct {
		path, kind string
		der        []byte
		priv       *ecdsa.PrivateKey
	}{
		{f.CA, "CERTIFICATE", caDER, nil},
		{f.Cert, "CERTIFICATE", leafDER, nil},
		{caKeyPath, "PRIVATE KEY", nil, caKey},
		{f.Key, "PRIVATE KEY", nil, key},
	} {
		der, mode := w.der, os.FileMode(0o644)
		if w.priv != nil {
			if der, err = x509.MarshalPKCS8PrivateKey(w.priv); err != nil {
				return Files{}, err
			}
			mode = 0o600
		}
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.kind, Bytes: der}), mode); err != nil {
			return Files{}, fmt.Errorf("tls: %w", err)
		}
	}
	return f, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
