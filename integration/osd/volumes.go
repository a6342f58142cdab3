package main

import (
	"context"

	"github.com/libopenstorage/openstorage/api"
	"github.com/libopenstorage/openstorage/volume"
)

// replicaDriver is the real `fake` volume driver with one addition: volumes read back
// through it report their runtime replica set. The fake stores spec.replica_set as
// given but never fills Volume.replica_sets, which Portworx does (the nodes holding a
// replica), and which stork's placement logic reads.
//
// The copy is made on the read path, not at create time, so it also covers the volumes
// the fake creates internally (snapshots and clones copy the parent's spec) and later
// spec updates. Nothing is written back to the store.
type replicaDriver struct {
	volume.VolumeDriver
}

// Inspect backs OpenStorageVolume/Inspect with options.deep and the SDK's internal lookups
// by name (util.VolumeFromName).
func (d *replicaDriver) Inspect(ctx context.Context, ids []string) ([]*api.Volume, error) {
	vols, err := d.VolumeDriver.Inspect(ctx, ids)
	withReplicaSets(vols)
	return vols, err
}

// Enumerate backs OpenStorageVolume/Inspect (non-deep), InspectWithFilters and Enumerate*.
func (d *replicaDriver) Enumerate(locator *api.VolumeLocator, labels map[string]string) ([]*api.Volume, error) {
	vols, err := d.VolumeDriver.Enumerate(locator, labels)
	withReplicaSets(vols)
	return vols, err
}

// SnapEnumerate backs OpenStorageSnapshot/Enumerate*; the SDK only returns ids from it,
// but keep every read path consistent.
func (d *replicaDriver) SnapEnumerate(ids []string, labels map[string]string) ([]*api.Volume, error) {
	vols, err := d.VolumeDriver.SnapEnumerate(ids, labels)
	withReplicaSets(vols)
	return vols, err
}

// withReplicaSets sets replica_sets = [spec.replica_set] on volumes that have a
// non-empty spec.replica_set and no runtime replica sets. Volumes created without
// spec.replica_set keep an empty replica_sets. The volumes are fresh copies decoded
// from the fake's kvdb, so mutating them is safe.
func withReplicaSets(vols []*api.Volume) {
	for _, v := range vols {
		rs := v.GetSpec().GetReplicaSet()
		if v == nil || len(v.ReplicaSets) > 0 || len(rs.GetNodes()) == 0 {
			continue
		}
		v.ReplicaSets = []*api.ReplicaSet{{
			Nodes:     append([]string(nil), rs.GetNodes()...),
			PoolUuids: append([]string(nil), rs.GetPoolUuids()...),
			Id:        rs.GetId(),
		}}
	}
}
