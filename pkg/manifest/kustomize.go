package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/falsesystems/alumiini/pkg/git"
)

// renderKustomization builds the kustomization in dir over the whole
// repository. dirFiles are the files of dir, already read; the repository
// is read again unless dir is its root.
func renderKustomization(ctx context.Context, dir string, dirFiles []git.File, read ReadFunc, o options) ([]Object, error) {
	maxObjects := o.maxObjects
	files := dirFiles
	if dir != "" {
		var err error
		if files, err = read(ctx, ""); err != nil {
			return nil, readError(ctx, "", err)
		}
	}
	repo := newRepository(files)
	kfile := repo.kustomizationSource(dir)
	if _, err := newPreflight(repo).kustomization(ctx, dir); err != nil {
		return nil, err
	}
	if o.kustomize != nil {
		data, err := o.kustomize(ctx, files, dir)
		if err != nil {
			if ctx.Err() != nil {
				return nil, stopped(kfile, ctx.Err())
			}
			return nil, &Error{Source: kfile, Message: "kustomize build failed: " + err.Error(), Err: err}
		}
		return objectsFromJSON(kfile, data, o.maxObjects)
	}
	fs, err := repo.fileSystem()
	if err != nil {
		return nil, &Error{Source: kfile, Message: err.Error()}
	}
	m, err := build(ctx, fs, "/"+dir)
	if err != nil {
		if ctx.Err() != nil {
			return nil, stopped(kfile, ctx.Err())
		}
		return nil, &Error{Source: kfile, Message: "kustomize build failed: " + err.Error(), Err: err}
	}
	if maxObjects > 0 && m.Size() > maxObjects {
		return nil, tooManyObjects(kfile, maxObjects)
	}
	return objectsOf(kfile, m)
}

// kustomizeSlot lets one kustomize build run at a time: a build sets
// kyaml's process-wide OpenAPI schema, so two at once could see each
// other's.
var kustomizeSlot = make(chan struct{}, 1)

// runKustomize is krusty's build of dir over fs; tests replace it to stand
// for a build that takes long.
var runKustomize = func(fs filesys.FileSystem, dir string) (resmap.ResMap, error) {
	opts := krusty.MakeDefaultOptions()
	opts.PluginConfig = types.DisabledPluginConfig()
	// fs holds the repository and nothing else, so a kustomization may read
	// any file of it (a patch beside a shared base) but nothing outside.
	opts.LoadRestrictions = types.LoadRestrictionsNone
	return krusty.MakeKustomizer(opts).Run(fs, dir)
}

// build runs kustomize without keeping the caller past ctx. A build cannot
// be interrupted: when ctx ends the caller stops waiting, and the build,
// whose input the preflight bounded, ends by itself and frees the slot.
func build(ctx context.Context, fs filesys.FileSystem, dir string) (resmap.ResMap, error) {
	select {
	case kustomizeSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	type result struct {
		m   resmap.ResMap
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-kustomizeSlot }()
		defer func() {
			// The worker's crash recovery does not reach this goroutine: a
			// panic here would end the process, so it becomes an error.
			if r := recover(); r != nil {
				done <- result{err: fmt.Errorf("kustomize panicked: %v", r)}
			}
		}()
		m, err := runKustomize(fs, dir)
		done <- result{m: m, err: err}
	}()
	select {
	case r := <-done:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// objectsOf converts kustomize's output through JSON: Resource.Map holds Go
// ints, on which unstructured's DeepCopy panics; JSON decoding gives the
// int64 and float64 unstructured expects.
func objectsOf(kfile string, m resmap.ResMap) ([]Object, error) {
	var objects []Object
	for _, r := range m.Resources() {
		source := fmt.Sprintf("%s (%s)", kfile, r.CurId())
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, &Error{Source: source, Message: "encoding kustomize output: " + err.Error()}
		}
		var content map[string]interface{}
		if err := utiljson.Unmarshal(data, &content); err != nil {
			return nil, &Error{Source: source, Message: "decoding kustomize output: " + err.Error()}
		}
		u := &unstructured.Unstructured{Object: content}
		if err := check(u); err != nil {
			return nil, &Error{Source: source, Message: err.Error()}
		}
		objects = append(objects, Object{Unstructured: u, Source: fmt.Sprintf("%s (%s)", kfile, IDOf(u))})
	}
	return objects, nil
}

// KustomizeFunc builds the kustomization at dir of a repository made of
// files, already checked by Render (no remote location, bounded inputs), and
// returns its objects as a JSON array. BuildJSON is one; a caller may run it
// somewhere it can bound and kill (see package kustomizeproc).
type KustomizeFunc func(ctx context.Context, files []git.File, dir string) ([]byte, error)

// Kustomize makes Render build kustomizations with fn instead of in this
// process.
func Kustomize(fn KustomizeFunc) Option { return func(o *options) { o.kustomize = fn } }

// BuildJSON builds the kustomization at dir in this process, synchronously,
// and returns its objects as a JSON array. Call it only on files Render has
// checked: it runs no check of its own.
func BuildJSON(files []git.File, dir string) ([]byte, error) {
	fs, err := newRepository(files).fileSystem()
	if err != nil {
		return nil, err
	}
	m, err := runKustomize(fs, "/"+dir)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.WriteByte('[')
	for i, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", r.CurId(), err)
		}
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(data)
	}
	out.WriteByte(']')
	return out.Bytes(), nil
}

// objectsFromJSON reads a build's JSON array, stopping at the first object
// past maxObjects.
func objectsFromJSON(kfile string, data []byte, maxObjects int) ([]Object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, &Error{Source: kfile, Message: "decoding kustomize output: " + err.Error()}
	}
	count := &objectCount{max: maxObjects}
	var objects []Object
	for dec.More() {
		if err := count.add(kfile); err != nil {
			return nil, err
		}
		var content map[string]interface{}
		err := dec.Decode(&content)
		if err == nil {
			// int64 and float64, as unstructured expects, not json.Number.
			err = utiljson.ConvertMapNumbers(content, 0)
		}
		if err != nil {
			return nil, &Error{Source: kfile, Message: "decoding kustomize output: " + err.Error()}
		}
		u := &unstructured.Unstructured{Object: content}
		source := fmt.Sprintf("%s (%s)", kfile, IDOf(u))
		if err := check(u); err != nil {
			return nil, &Error{Source: source, Message: err.Error()}
		}
		objects = append(objects, Object{Unstructured: u, Source: source})
	}
	return objects, nil
}
