package drift

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/falsesystems/alumiini/pkg/apply"
)

// Fingerprint sums who owns which fields of an object, from its
// managedFields, leaving out status writes and other managers' times.
// Server-side apply gives a field changed by an update to whoever changed
// it, so a hand edit or another controller's write to a field alumiini
// applied changes the fingerprint, while status updates by controllers and
// repeated writes of fields someone already owns do not; alumiini's own
// apply entry counts with its time (ownApplyTime). The break-glass
// annotation counts too, so setting or removing it is noticed. Field sets
// are summed with their keys sorted (sortedFields), so an object sums alike
// however it was read.
func Fingerprint(meta metav1.Object) string {
	entries := make([]string, 0, len(meta.GetManagedFields()))
	sortable := maxSortedFieldsBytes
	for _, m := range meta.GetManagedFields() {
		if m.Subresource == "status" {
			continue
		}
		fields := ""
		if m.FieldsV1 != nil {
			if fields = sortedFields(m.FieldsV1.Raw, sortable); len(m.FieldsV1.Raw) <= sortable {
				// Each set decoded costs beyond its bytes: 20,000 tiny
				// entries (an Update may add them) took 11.5 ms per event.
				sortable -= max(len(m.FieldsV1.Raw), minSortedFieldsCharge)
			}
		}
		entries = append(entries, strings.Join([]string{m.Manager, string(m.Operation), m.Subresource, m.APIVersion,
			ownApplyTime(m), fields}, "\x00"))
	}
	slices.Sort(entries)
	h := sha256.New()
	for _, e := range entries {
		h.Write([]byte(e))
		h.Write([]byte{0xff})
	}
	h.Write([]byte(meta.GetAnnotations()[apply.AnnotationSuspendHeal]))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// ownApplyTime is when alumiini's own apply entry last changed the object, ""
// for any other entry. Whoever may write the object may apply under
// alumiini's field manager name; applying the fields alumiini set, with
// other values, changes no field set, only this time (whole seconds: a
// write within the second of alumiini's own changes neither, and the
// controller tells it from its watch event: the object's generation or
// resourceVersion moved, and no other entry was made, re-dated or grew).
// Other managers' times stay out: their writes to fields alumiini does not
// own are not drift, and should cost no dry-run.
func ownApplyTime(m metav1.ManagedFieldsEntry) string {
	if !apply.IsOwnApplyEntry(m) || m.Time == nil {
		return ""
	}
	return m.Time.UTC().Format(time.RFC3339)
}

// maxSortedFieldsBytes bounds the field sets of one object sortedFields
// decodes, together: a Deployment's are about 1 KiB. When the bound was per
// set, an attacker review wrote 22 sets just under it into one object: 103
// ms per watch event.
const maxSortedFieldsBytes = 64 << 10

// minSortedFieldsCharge is what each set decoded counts against
// maxSortedFieldsBytes at least: at most 256 sets are decoded per object.
const minSortedFieldsCharge = 256

// sortedFields writes a field set with its keys sorted and escaped alike.
// The same fields reach alumiini in different orders: kube-apiserver orders
// a built-in kind's list keys by value (port 80 before 443) and sends them
// so in protobuf (the drift watch, a write's metadata answer); a custom
// resource's are stored as JSON, sorted as strings; and an object decoded
// whole has them written back from JSON maps, sorted as strings. Without
// this an unchanged object read whole (its live copy) looked drifted at
// every watch event. The keys are compared as strings, never parsed, so
// numbers in them stay exact; it costs a Deployment's 22 µs instead of 1.5
// (BenchmarkFingerprint), at each drift watch event and each write. A set
// over the bytes left to sort (maxSortedFieldsBytes for the object), which
// only a hostile writer's managedFields reach, is summed as it came: at worst
// a needless dry-run, rather than megabytes decoded at each watch event on
// the informer's one goroutine.
func sortedFields(raw []byte, sortable int) string {
	if len(raw) > sortable {
		return string(raw)
	}
	var set map[string]any
	if err := json.Unmarshal(raw, &set); err != nil {
		return string(raw)
	}
	sorted, err := json.Marshal(set) // encoding/json writes map keys sorted
	if err != nil {
		return string(raw)
	}
	return string(sorted)
}

// foreignWriteAfter reports whether a manager other than alumiini's apply
// wrote the object (not its status) after alumiini's last apply (applied,
// ownApplied's answer), or alumiini applied nothing of it: what a restarted
// controller, with no remembered fingerprint, must check. An update under
// alumiini's name is someone else's: alumiini only applies the objects it
// tracks.
func foreignWriteAfter(meta metav1.Object, applied *metav1.Time) bool {
	if applied == nil {
		return true
	}
	for _, m := range meta.GetManagedFields() {
		if apply.IsOwnApplyEntry(m) || m.Subresource == "status" || m.Time == nil {
			continue
		}
		if m.Time.After(applied.Time) {
			return true
		}
	}
	return false
}

// othersEntries lists every managedFields entry but alumiini's own apply,
// each as a sum of who wrote it and when, and the size of its field set:
// how they changed from one watch event to the next says whether that write
// was (also) someone else's (othersWrote). Asking the times instead ("written
// after alumiini's apply") trusted what an Update may set: a tenant's entry
// dated 2099 made every later write look like another writer's (attacker
// review).
func othersEntries(meta metav1.Object) string {
	var list []string
	for _, m := range meta.GetManagedFields() {
		if apply.IsOwnApplyEntry(m) {
			continue
		}
		var when string
		if m.Time != nil {
			when = m.Time.UTC().Format(time.RFC3339)
		}
		h := fnv.New32a()
		h.Write([]byte(strings.Join([]string{m.Manager, string(m.Operation), m.Subresource, m.APIVersion, when}, "\x00")))
		size := 0
		if m.FieldsV1 != nil {
			size = len(m.FieldsV1.Raw)
		}
		list = append(list, hex.EncodeToString(h.Sum(nil))+":"+strconv.Itoa(size))
	}
	return strings.Join(foldOthers(list), ",")
}

// maxOthersEntries bounds the entries othersEntries keeps apart, and so what
// the watch keeps per object (about 15 bytes each): an Update may add
// thousands of tiny entries (about 14,000 fit the object's 1.5 MiB), and
// each was kept, 210 KB per object.
const maxOthersEntries = 64

// foldOthers keeps the first maxOthersEntries-1 entries (sorted, so the
// same entries fold alike) and folds the rest into one, a sum of who wrote
// them and their total size. On an object with that many writers a change
// to a folded entry, a removed one included, reads as another writer's:
// the same-second rule then misses an apply under alumiini's name there.
func foldOthers(list []string) []string {
	if len(list) <= maxOthersEntries {
		return list
	}
	slices.Sort(list)
	h, total := fnv.New32a(), 0
	for _, e := range list[maxOthersEntries-1:] {
		who, size, _ := strings.Cut(e, ":")
		h.Write([]byte(who))
		n, _ := strconv.Atoi(size)
		total += n
	}
	return append(list[:maxOthersEntries-1], "folded-"+hex.EncodeToString(h.Sum(nil))+":"+strconv.Itoa(total))
}

// othersWrote says whether, between two othersEntries, an entry appeared,
// or changed who or when, or its field set grew: someone else wrote. An
// apply under alumiini's name, even forced, only takes fields from other
// entries, which shrink or go (a second review: with a made-up status entry
// sharing a field, a forced apply in alumiini's second changed the sum of
// the others, and went unseen).
func othersWrote(before, after string) bool {
	sizes := map[string]int{}
	for _, e := range strings.Split(before, ",") {
		who, size, _ := strings.Cut(e, ":")
		sizes[who], _ = strconv.Atoi(size)
	}
	for _, e := range strings.Split(after, ",") {
		who, size, _ := strings.Cut(e, ":")
		was, seen := sizes[who]
		if now, _ := strconv.Atoi(size); who != "" && (!seen || now > was) {
			return true
		}
	}
	return false
}

// ownApplied is the time of alumiini's own apply entry, nil for none.
func ownApplied(meta metav1.Object) *metav1.Time {
	for _, m := range meta.GetManagedFields() {
		if apply.IsOwnApplyEntry(m) && m.Time != nil {
			return m.Time
		}
	}
	return nil
}
