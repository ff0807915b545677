package node

import (
	"testing"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/vrrp/vrouter"
)

func TestDeriveRole(t *testing.T) {
	cases := []struct {
		states []vrouter.State
		want   sdk.Role
	}{
		{nil, sdk.RoleUnknown},
		{[]vrouter.State{vrouter.Master}, sdk.RoleMaster},
		{[]vrouter.State{vrouter.Master, vrouter.Master}, sdk.RoleMaster},
		{[]vrouter.State{vrouter.Master, vrouter.Backup}, sdk.RoleBackup},
		{[]vrouter.State{vrouter.Init}, sdk.RoleBackup},
		{[]vrouter.State{vrouter.Master, vrouter.Fault}, sdk.RoleFault},
		{[]vrouter.State{vrouter.Backup, vrouter.Fault}, sdk.RoleFault},
	}
	for _, c := range cases {
		if got := DeriveRole(c.states); got != c.want {
			t.Errorf("%v: got %s, want %s", c.states, got, c.want)
		}
	}
}
