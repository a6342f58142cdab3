package main

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/libopenstorage/openstorage/api"
	"google.golang.org/grpc/status"
)

// emptyListChecks reports what the node calls return before any PUT /nodes.
func emptyListChecks(c *client) {
	step("empty node list")
	nodes := api.NewOpenStorageNodeClient(c.conn)
	ctx, cancel := c.ctx()
	defer cancel()
	ids, err := nodes.Enumerate(ctx, &api.SdkNodeEnumerateRequest{})
	check(err == nil && len(ids.GetNodeIds()) == 0, "Node/Enumerate -> %v (%s)", ids.GetNodeIds(), grpcErr(err))
	_, err = nodes.InspectCurrent(ctx, &api.SdkNodeInspectCurrentRequest{})
	info("Node/InspectCurrent -> %s", grpcErr(err))
}

func nodeChecks(c *client) {
	step("nodes")
	nodes := api.NewOpenStorageNodeClient(c.conn)
	ctx, cancel := c.ctx()
	defer cancel()

	ids, err := nodes.Enumerate(ctx, &api.SdkNodeEnumerateRequest{})
	check(err == nil && reflect.DeepEqual(ids.GetNodeIds(), []string{"px-n1", "px-n2", "px-n3"}),
		"Node/Enumerate -> %v (%s)", ids.GetNodeIds(), grpcErr(err))

	list, err := nodes.EnumerateWithFilters(ctx, &api.SdkNodeEnumerateWithFiltersRequest{})
	var got []string
	for _, n := range list.GetNodes() {
		got = append(got, fmt.Sprintf("%s/%s/%s/%s/%s/%s", n.GetId(), n.GetSchedulerNodeName(), n.GetMgmtIp(),
			n.GetDataIp(), n.GetStatus(), n.GetSchedulerTopology().GetLabels()["topology.portworx.io/zone"]))
	}
	check(err == nil && reflect.DeepEqual(got, []string{
		"px-n1/n1/10.0.0.1/10.0.1.1/STATUS_OK/z1",
		"px-n2/n2/10.0.0.2/10.0.1.2/STATUS_OK/z2",
		"px-n3/n3/10.0.0.3/10.0.1.3/STATUS_STORAGE_DOWN/z3",
	}), "Node/EnumerateWithFilters -> id/schedulerNodeName/mgmtIp/dataIp/status/zone %v (%s)", got, grpcErr(err))

	one, err := nodes.Inspect(ctx, &api.SdkNodeInspectRequest{NodeId: "px-n2"})
	check(err == nil && one.GetNode().GetHostname() == "n2", "Node/Inspect px-n2 -> hostname %q, security %v (%s)",
		one.GetNode().GetHostname(), one.GetNode().GetSecurityStatus(), grpcErr(err))
	_, err = nodes.Inspect(ctx, &api.SdkNodeInspectRequest{NodeId: "px-nope"})
	check(err != nil, "Node/Inspect unknown id -> %s", grpcErr(err))
	cur, err := nodes.InspectCurrent(ctx, &api.SdkNodeInspectCurrentRequest{})
	check(err == nil && cur.GetNode().GetId() == "px-n1", "Node/InspectCurrent -> %s (%s)", cur.GetNode().GetId(), grpcErr(err))
	cl, err := api.NewOpenStorageClusterClient(c.conn).InspectCurrent(ctx, &api.SdkClusterInspectCurrentRequest{})
	check(err == nil && cl.GetCluster().GetId() != "", "Cluster/InspectCurrent -> id %q name %q status %v (%s)",
		cl.GetCluster().GetId(), cl.GetCluster().GetName(), cl.GetCluster().GetStatus(), grpcErr(err))

	code, body := c.http("PUT", "/nodes/px-n2/status", `{"status":"STATUS_OFFLINE"}`)
	check(code == 204, "PUT /nodes/px-n2/status STATUS_OFFLINE -> %d %s", code, body)
	one, err = nodes.Inspect(ctx, &api.SdkNodeInspectRequest{NodeId: "px-n2"})
	check(err == nil && one.GetNode().GetStatus() == api.Status_STATUS_OFFLINE, "Node/Inspect px-n2 -> %v", one.GetNode().GetStatus())
	list, _ = nodes.EnumerateWithFilters(ctx, &api.SdkNodeEnumerateWithFiltersRequest{})
	check(len(list.GetNodes()) == 3 && list.GetNodes()[1].GetStatus() == api.Status_STATUS_OFFLINE,
		"Node/EnumerateWithFilters shows px-n2 STATUS_OFFLINE")
	code, body = c.http("PUT", "/nodes/px-n2/status", `{"status":"STATUS_OK"}`)
	check(code == 204, "PUT /nodes/px-n2/status STATUS_OK -> %d %s", code, body)

	code, body = c.http("PUT", "/nodes/px-nope/status", `{"status":"STATUS_OK"}`)
	check(code == 404, "PUT /nodes/px-nope/status -> %d (%s)", code, body)
	code, body = c.http("PUT", "/nodes/px-n1/status", `{"status":"BROKEN"}`)
	check(code == 400, "PUT /nodes/px-n1/status BROKEN -> %d", code)
	code, body = c.http("PUT", "/nodes", `[{"id":"x","status":"STATUS_NOPE"}]`)
	check(code == 400, "PUT /nodes with unknown status -> %d (%s)", code, firstLine(body))
	code, body = c.http("GET", "/nodes", "")
	check(code == 200 && strings.Contains(body, `"schedulerNodeName":"n3"`), "GET /nodes -> %d, 3 nodes kept after the bad PUT", code)
}

// volumeChecks creates a volume with a replica set, snapshots it, restores and clones,
// and reports what the fake does at each step.
func volumeChecks(c *client) {
	step("volumes")
	vols := api.NewOpenStorageVolumeClient(c.conn)
	ctx, cancel := c.ctx()
	defer cancel()
	inspect := func(id string) *api.Volume {
		r, err := vols.Inspect(ctx, &api.SdkVolumeInspectRequest{VolumeId: id})
		if err != nil {
			fail("Volume/Inspect %s -> %s", id, grpcErr(err))
		}
		return r.GetVolume()
	}
	describe := func(what string, v *api.Volume) {
		info("%s: name=%q labels=%v parent=%q readonly=%v state=%v status=%v replica_sets=%v spec.replica_set=%v attached_on=%q",
			what, v.GetLocator().GetName(), v.GetLocator().GetVolumeLabels(), v.GetSource().GetParent(), v.GetReadonly(), v.GetState(), v.GetStatus(),
			replicaNodes(v), v.GetSpec().GetReplicaSet().GetNodes(), v.GetAttachedOn())
	}

	spec := &api.VolumeSpec{Size: 1 << 30, HaLevel: 2, ReplicaSet: &api.ReplicaSet{Nodes: []string{"px-n1", "px-n2"}}}
	created, err := vols.Create(ctx, &api.SdkVolumeCreateRequest{Name: "pvc-aaa", Spec: spec, Labels: map[string]string{"pvc": "data"}})
	if !check(err == nil, "Volume/Create pvc-aaa replica_set=[px-n1 px-n2] -> %s", grpcErr(err)) {
		return
	}
	volID := created.GetVolumeId()
	v := inspect(volID)
	check(reflect.DeepEqual(replicaNodes(v), [][]string{{"px-n1", "px-n2"}}), "Volume/Inspect -> replica_sets %v", replicaNodes(v))
	describe("volume", v)
	deep, err := vols.Inspect(ctx, &api.SdkVolumeInspectRequest{VolumeId: volID, Options: &api.VolumeInspectOptions{Deep: true}})
	check(err == nil && len(replicaNodes(deep.GetVolume())) == 1, "Volume/Inspect deep -> replica_sets %v", replicaNodes(deep.GetVolume()))
	byName, err := vols.InspectWithFilters(ctx, &api.SdkVolumeInspectWithFiltersRequest{Name: "pvc-aaa"})
	check(err == nil && len(byName.GetVolumes()) == 1 && len(replicaNodes(byName.GetVolumes()[0].GetVolume())) == 1,
		"Volume/InspectWithFilters name=pvc-aaa -> %d volume(s) with replica_sets (%s)", len(byName.GetVolumes()), grpcErr(err))
	byNameID, err := vols.Inspect(ctx, &api.SdkVolumeInspectRequest{VolumeId: "pvc-aaa"})
	info("Volume/Inspect volume_id=<name> -> %s (id %s)", grpcErr(err), byNameID.GetVolume().GetId())

	again, err := vols.Create(ctx, &api.SdkVolumeCreateRequest{Name: "pvc-aaa", Spec: spec, Labels: map[string]string{"pvc": "data"}})
	check(err == nil && again.GetVolumeId() == volID, "Volume/Create pvc-aaa again (idempotent by name) -> same id (%s)", grpcErr(err))
	_, err = vols.Create(ctx, &api.SdkVolumeCreateRequest{Name: "pvc-ha0", Spec: &api.VolumeSpec{Size: 1 << 30}})
	info("Volume/Create with ha_level 0 -> %s", grpcErr(err))

	plain, err := vols.Create(ctx, &api.SdkVolumeCreateRequest{Name: "pvc-bbb", Spec: &api.VolumeSpec{Size: 1 << 30, HaLevel: 1}})
	check(err == nil && len(inspect(plain.GetVolumeId()).GetReplicaSets()) == 0, "Volume/Create without replica_set -> replica_sets empty")
	byIP, err := vols.Create(ctx, &api.SdkVolumeCreateRequest{Name: "pvc-ccc",
		Spec: &api.VolumeSpec{Size: 1 << 30, HaLevel: 1, ReplicaSet: &api.ReplicaSet{Nodes: []string{"10.0.0.3"}}}})
	check(err == nil && reflect.DeepEqual(replicaNodes(inspect(byIP.GetVolumeId())), [][]string{{"px-n3"}}),
		"Volume/Create replica_set=[10.0.0.3] (mgmt IP) -> replica_sets %v", replicaNodes(inspect(byIP.GetVolumeId())))

	step("snapshots")
	snap, err := vols.SnapshotCreate(ctx, &api.SdkVolumeSnapshotCreateRequest{VolumeId: volID, Name: "snap-1", Labels: map[string]string{"k": "v"}})
	if !check(err == nil, "Volume/SnapshotCreate of pvc-aaa -> %s", grpcErr(err)) {
		return
	}
	snapID := snap.GetSnapshotId()
	describe("snapshot", inspect(snapID))
	en, err := vols.SnapshotEnumerate(ctx, &api.SdkVolumeSnapshotEnumerateRequest{VolumeId: volID})
	check(err == nil && reflect.DeepEqual(en.GetVolumeSnapshotIds(), []string{snapID}), "Volume/SnapshotEnumerate volume_id -> %v", en.GetVolumeSnapshotIds())
	ef, err := vols.SnapshotEnumerateWithFilters(ctx, &api.SdkVolumeSnapshotEnumerateWithFiltersRequest{VolumeId: volID, Labels: map[string]string{"k": "v"}})
	check(err == nil && len(ef.GetVolumeSnapshotIds()) == 1, "Volume/SnapshotEnumerateWithFilters volume_id+labels -> %v (%s)", ef.GetVolumeSnapshotIds(), grpcErr(err))
	ef, err = vols.SnapshotEnumerateWithFilters(ctx, &api.SdkVolumeSnapshotEnumerateWithFiltersRequest{Labels: map[string]string{"k": "other"}})
	check(err == nil && len(ef.GetVolumeSnapshotIds()) == 0, "Volume/SnapshotEnumerateWithFilters non-matching labels -> %v", ef.GetVolumeSnapshotIds())
	all, err := vols.Enumerate(ctx, &api.SdkVolumeEnumerateRequest{})
	info("Volume/Enumerate lists snapshots too: %v (%d ids: 3 volumes + snapshot)", contains(all.GetVolumeIds(), snapID), len(all.GetVolumeIds()))
	_, err = vols.SnapshotCreate(ctx, &api.SdkVolumeSnapshotCreateRequest{VolumeId: "no-such-volume", Name: "snap-x"})
	info("Volume/SnapshotCreate of unknown volume -> %s", grpcErr(err))

	_, err = vols.SnapshotRestore(ctx, &api.SdkVolumeSnapshotRestoreRequest{VolumeId: volID, SnapshotId: snapID})
	check(err == nil, "Volume/SnapshotRestore pvc-aaa <- snap-1 -> %s", grpcErr(err))
	describe("volume after restore", inspect(volID))
	_, err = vols.SnapshotRestore(ctx, &api.SdkVolumeSnapshotRestoreRequest{VolumeId: volID, SnapshotId: "no-such-snap"})
	info("Volume/SnapshotRestore with unknown snapshot id -> %s", grpcErr(err))
	_, err = vols.SnapshotRestore(ctx, &api.SdkVolumeSnapshotRestoreRequest{VolumeId: plain.GetVolumeId(), SnapshotId: snapID})
	info("Volume/SnapshotRestore of snap-1 onto another volume (pvc-bbb) -> %s", grpcErr(err))

	clone, err := vols.Clone(ctx, &api.SdkVolumeCloneRequest{Name: "pvc-restored", ParentId: snapID, AdditionalLabels: map[string]string{"restored": "yes"}})
	if check(err == nil, "Volume/Clone pvc-restored <- snap-1 -> %s", grpcErr(err)) {
		cv := inspect(clone.GetVolumeId())
		describe("clone of snapshot", cv)
		info("clone labels: %v", cv.GetLocator().GetVolumeLabels())
		en, _ = vols.SnapshotEnumerate(ctx, &api.SdkVolumeSnapshotEnumerateRequest{VolumeId: snapID})
		info("Volume/SnapshotEnumerate volume_id=<snapshot> lists the clone: %v", contains(en.GetVolumeSnapshotIds(), clone.GetVolumeId()))
		en, _ = vols.SnapshotEnumerate(ctx, &api.SdkVolumeSnapshotEnumerateRequest{})
		info("Volume/SnapshotEnumerate (no volume_id) -> %d ids, includes the clone: %v", len(en.GetVolumeSnapshotIds()), contains(en.GetVolumeSnapshotIds(), clone.GetVolumeId()))
	}
	vc, err := vols.Clone(ctx, &api.SdkVolumeCloneRequest{Name: "pvc-vclone", ParentId: volID})
	if check(err == nil, "Volume/Clone pvc-vclone <- pvc-aaa (a volume) -> %s", grpcErr(err)) {
		describe("clone of volume", inspect(vc.GetVolumeId()))
		en, _ = vols.SnapshotEnumerate(ctx, &api.SdkVolumeSnapshotEnumerateRequest{VolumeId: volID})
		info("Volume/SnapshotEnumerate volume_id=pvc-aaa lists the volume clone as a snapshot: %v", contains(en.GetVolumeSnapshotIds(), vc.GetVolumeId()))
	}

	_, err = vols.Delete(ctx, &api.SdkVolumeDeleteRequest{VolumeId: snapID})
	check(err == nil, "Volume/Delete snap-1 -> %s", grpcErr(err))
	en, _ = vols.SnapshotEnumerate(ctx, &api.SdkVolumeSnapshotEnumerateRequest{VolumeId: volID})
	check(!contains(en.GetVolumeSnapshotIds(), snapID), "Volume/SnapshotEnumerate after delete no longer lists snap-1 -> %v", en.GetVolumeSnapshotIds())
	_, err = vols.Delete(ctx, &api.SdkVolumeDeleteRequest{VolumeId: snapID})
	check(err == nil, "Volume/Delete snap-1 again (idempotent) -> %s", grpcErr(err))
	_, err = vols.Inspect(ctx, &api.SdkVolumeInspectRequest{VolumeId: snapID})
	check(status.Code(err).String() == "NotFound", "Volume/Inspect deleted snapshot -> %s", grpcErr(err))
	_, err = vols.Delete(ctx, &api.SdkVolumeDeleteRequest{VolumeId: volID})
	info("Volume/Delete pvc-aaa while its clone pvc-vclone exists -> %s", grpcErr(err))
}

func replicaNodes(v *api.Volume) [][]string {
	out := [][]string{}
	for _, rs := range v.GetReplicaSets() {
		out = append(out, rs.GetNodes())
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
