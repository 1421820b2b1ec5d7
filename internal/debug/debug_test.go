package debug

import "testing"

func TestOn(t *testing.T) {
	for _, tc := range []struct {
		env, what string
		want      bool
	}{
		{"", "comm", false},
		{"comm", "comm", true},
		{"coll,comm", "comm", true},
		{"communicator", "comm", false},
		{"all", "node", true},
		{"coll,", "node", false},
	} {
		t.Setenv(Env, tc.env)
		if got := On(tc.what); got != tc.want {
			t.Errorf("%s=%q: On(%q) = %v, want %v", Env, tc.env, tc.what, got, tc.want)
		}
	}
}
