package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// directive marks a const block whose constants Python receives.
const directive = "//pmrun:abi"

// function is an exported function of the library.
type function struct {
	name   string
	params []string // parameter names, for the reader
	args   []string // their ctypes, as _abi.py names them
	result string   // "I64" or "None"
}

// block is a marked const block.
type block struct {
	doc    []string // its doc comment, a line each
	names  []string // Python names, in order
	values []string
}

// generate reads the non-test Go files of dir and returns _abi.py.
func generate(dir string) ([]byte, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no Go files", dir)
	}
	var funcs []function
	var decls []*ast.GenDecl
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !exported(d) {
					continue
				}
				fn, err := signature(d)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", fset.Position(d.Pos()), err)
				}
				funcs = append(funcs, fn)
			case *ast.GenDecl:
				if d.Tok == token.CONST && marked(d.Doc) {
					decls = append(decls, d)
				}
			}
		}
	}
	if len(funcs) == 0 {
		return nil, fmt.Errorf("%s: no function is marked //export", dir)
	}
	blocks, err := constants(fset, decls)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return render(funcs, blocks), nil
}

// exported reports whether cgo exports d (a //export line in its doc).
func exported(d *ast.FuncDecl) bool {
	if d.Doc == nil || d.Recv != nil {
		return false
	}
	for _, c := range d.Doc.List {
		if strings.HasPrefix(c.Text, "//export ") {
			return true
		}
	}
	return false
}

// marked reports whether a doc comment holds the directive.
func marked(doc *ast.CommentGroup) bool {
	if doc == nil {
		return false
	}
	for _, c := range doc.List {
		if strings.TrimSpace(c.Text) == directive {
			return true
		}
	}
	return false
}

// signature is d's ctypes signature.
func signature(d *ast.FuncDecl) (function, error) {
	fn := function{name: d.Name.Name, result: "None"}
	for i, field := range d.Type.Params.List {
		t, ok := ctype(field.Type)
		if !ok {
			return fn, fmt.Errorf("%s: parameter %d has type %s, which has no ctypes equivalent here "+
				"(int64, *int64, unsafe.Pointer, *C.char)", fn.name, i+1, expr(field.Type))
		}
		names := field.Names
		if len(names) == 0 {
			names = []*ast.Ident{ast.NewIdent("_")}
		}
		for _, n := range names {
			fn.params = append(fn.params, n.Name)
			fn.args = append(fn.args, t)
		}
	}
	if res := d.Type.Results; res != nil && len(res.List) > 0 {
		if len(res.List) > 1 || len(res.List[0].Names) > 1 || expr(res.List[0].Type) != "int64" {
			return fn, fmt.Errorf("%s: the result must be one int64 or none, not (%s)", fn.name, fieldTypes(res))
		}
		fn.result = "I64"
	}
	return fn, nil
}

// ctype is the ctypes name (as _abi.py defines it) of a parameter type.
func ctype(t ast.Expr) (string, bool) {
	switch expr(t) {
	case "int64":
		return "I64", true
	case "*int64":
		return "P64", true
	case "unsafe.Pointer":
		return "PTR", true
	case "*C.char":
		return "STR", true
	}
	return "", false
}

// expr is the source text of a type expression.
func expr(t ast.Expr) string {
	return types.ExprString(t)
}

func fieldTypes(fl *ast.FieldList) string {
	var ts []string
	for _, f := range fl.List {
		for range max(len(f.Names), 1) {
			ts = append(ts, expr(f.Type))
		}
	}
	return strings.Join(ts, ", ")
}

// constants evaluates the marked blocks, which must depend on nothing but
// themselves (literals, iota and each other).
func constants(fset *token.FileSet, decls []*ast.GenDecl) ([]block, error) {
	file := &ast.File{Name: ast.NewIdent("abi")}
	for _, d := range decls {
		file.Decls = append(file.Decls, d)
	}
	info := &types.Info{Defs: make(map[*ast.Ident]types.Object)}
	conf := types.Config{Error: func(error) {}} // the first error is returned
	if _, err := conf.Check("abi", fset, []*ast.File{file}, info); err != nil {
		return nil, fmt.Errorf("the %s constants must be computed from literals and each other only: %w",
			directive, err)
	}
	seen := make(map[string]string) // Python name -> Go name
	var blocks []block
	for _, d := range decls {
		b := block{doc: docLines(d.Doc)}
		for _, spec := range d.Specs {
			for _, id := range spec.(*ast.ValueSpec).Names {
				if id.Name == "_" {
					continue
				}
				v := info.Defs[id].(*types.Const).Val()
				if v.Kind() != constant.Int {
					return nil, fmt.Errorf("%s: constant %s is %s, not an integer", fset.Position(id.Pos()), id.Name, v)
				}
				py := pyName(id.Name)
				if other, ok := seen[py]; ok {
					return nil, fmt.Errorf("%s: constants %s and %s are both %s in Python",
						fset.Position(id.Pos()), other, id.Name, py)
				}
				seen[py] = id.Name
				b.names = append(b.names, py)
				b.values = append(b.values, v.ExactString())
			}
		}
		blocks = append(blocks, b)
	}
	return blocks, nil
}

// docLines is a doc comment's text without its directives, a line each.
func docLines(doc *ast.CommentGroup) []string {
	text := strings.TrimSpace(doc.Text())
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}

// pyName is a Go constant's name as a Python constant: upper case, with an
// underscore where a word starts (errRMAShared is ERR_RMA_SHARED, tInt8 is
// T_INT8, opBxor is OP_BXOR).
func pyName(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

const header = `# Code generated by internal/abigen from pybridge's Go source; DO NOT EDIT.
"""The C ABI of pmrun's runtime library (libpmrun.so, built from pybridge):
the ctypes signature of each function it exports and the codes that both
sides use. "go generate ./pybridge" writes this module; a test fails when it
differs from what the Go source says.
"""

from ctypes import POINTER, c_char_p, c_int64, c_void_p

I64 = c_int64
P64 = POINTER(c_int64)
PTR = c_void_p
STR = c_char_p
`

// render writes the Python module.
func render(funcs []function, blocks []block) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("\n# name -> (argument types, result type) of each exported function.\nSIGNATURES = {\n")
	for _, fn := range funcs {
		args := strings.Join(fn.args, ", ")
		if len(fn.args) == 1 {
			args += ","
		}
		fmt.Fprintf(&b, "    # %s(%s)\n", fn.name, strings.Join(fn.params, ", "))
		fmt.Fprintf(&b, "    %q: ((%s), %s),\n", fn.name, args, fn.result)
	}
	b.WriteString("}\n")
	b.WriteString("\n# name -> the names of its parameters.\nPARAMS = {\n")
	for _, fn := range funcs {
		quoted := make([]string, len(fn.params))
		for i, p := range fn.params {
			quoted[i] = strconv.Quote(p)
		}
		tail := ""
		if len(quoted) == 1 {
			tail = ","
		}
		fmt.Fprintf(&b, "    %q: (%s%s),\n", fn.name, strings.Join(quoted, ", "), tail)
	}
	b.WriteString("}\n")
	for _, bl := range blocks {
		b.WriteString("\n")
		for _, line := range bl.doc {
			b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
		}
		for i, name := range bl.names {
			fmt.Fprintf(&b, "%s = %s\n", name, bl.values[i])
		}
	}
	return b.Bytes()
}
