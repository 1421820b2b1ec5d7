package main

// The C ABI that pmrun's Python package calls through ctypes is written here
// only: the functions marked //export and the constants of the blocks marked
// //pmrun:abi. python/pmrun/_abi.py, its Python side, is generated from them
// (internal/abigen), and a test fails when that file is out of date.

//go:generate go run ../internal/abigen -dir . -o ../python/pmrun/_abi.py
