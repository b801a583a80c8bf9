{{/* Names: <release>-kube-event-watcher, or the release name when it holds the chart's. */}}
{{- define "kew.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kew.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kew.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kew.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kew.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kew.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kew.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kew.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: give the existing ServiceAccount's name (serviceAccount.create is false)" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kew.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "kew.stateConfigMap" -}}
{{- default (printf "%s-state" (include "kew.fullname" .)) .Values.state.configmap -}}
{{- end -}}

{{- define "kew.lease" -}}
{{- default (include "kew.fullname" .) .Values.ha.lease -}}
{{- end -}}

{{- define "kew.secretName" -}}
{{- printf "%s-receivers" (include "kew.fullname" .) -}}
{{- end -}}

{{/* "true" when the Pod and Node watches run (detectors, or cache-backed enrichment). */}}
{{- define "kew.watchesObjects" -}}
{{- if or .Values.detectors.enabled (and .Values.enrichment.enabled .Values.enrichment.watchObjects) -}}true{{- end -}}
{{- end -}}

{{/*
The check values.schema.json cannot make (the schema has the rest): in scope namespaced,
every namespace a source lists must be one the chart grants access in. Included by every
template that depends on it, so that `helm template --show-only` fails as well. (helm lint
reports a `fail` only as [INFO]; helm template and helm install stop on it.)
*/}}
{{- define "kew.validate" -}}
{{- if eq .Values.scope "namespaced" -}}
{{- range $i, $source := (.Values.config.sources | default list) -}}
{{- range ($source.namespaces | default list) -}}
{{- if not (has . $.Values.namespaces) -}}
{{- fail (printf "config.sources[%d].namespaces: %q is not in namespaces, so the chart grants no access to it (add it to namespaces)" $i .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The daemon's config: `config` with the keys the chart owns set from the values. Keys are
written sorted (toYaml).
*/}}
{{- define "kew.config" -}}
{{- include "kew.validate" . -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $enrichment := deepCopy (get $config "enrichment" | default dict) -}}
{{- $logTail := deepCopy (get $enrichment "log_tail" | default dict) -}}
{{- $_ := set $logTail "enabled" .Values.enrichment.logTail -}}
{{- $_ := set $enrichment "log_tail" $logTail -}}
{{- $_ := set $enrichment "enabled" .Values.enrichment.enabled -}}
{{- $_ := set $enrichment "namespace_labels" .Values.enrichment.namespaceLabels -}}
{{- $_ := set $enrichment "owner_groups" (.Values.enrichment.ownerGroups | default list) -}}
{{- $_ := set $enrichment "watch_objects" .Values.enrichment.watchObjects -}}
{{- $_ := set $config "enrichment" $enrichment -}}
{{- $detectors := deepCopy (get $config "detectors" | default dict) -}}
{{- $_ := set $detectors "enabled" .Values.detectors.enabled -}}
{{- $_ := set $config "detectors" $detectors -}}
{{- $state := deepCopy (get $config "state" | default dict) -}}
{{- $_ := set $state "backend" .Values.state.backend -}}
{{- $_ := set $state "path" .Values.state.path -}}
{{- if eq .Values.state.backend "configmap" -}}
{{- $_ := set $state "configmap" (include "kew.stateConfigMap" .) -}}
{{- end -}}
{{- $_ := set $config "state" $state -}}
{{- $ha := deepCopy (get $config "ha" | default dict) -}}
{{- $_ := set $ha "enabled" .Values.ha.enabled -}}
{{- if .Values.ha.enabled -}}
{{- $_ := set $ha "lease" (include "kew.lease" .) -}}
{{- end -}}
{{- $_ := set $config "ha" $ha -}}
{{- $ops := deepCopy (get $config "ops" | default dict) -}}
{{- $_ := set $ops "listen" (printf "0.0.0.0:%d" (int .Values.ops.port)) -}}
{{- $_ := set $config "ops" $ops -}}
{{- if eq .Values.scope "namespaced" -}}
{{- $sources := list -}}
{{- range (get $config "sources" | default (list dict)) -}}
{{- $source := deepCopy . -}}
{{- if empty (get $source "namespaces") -}}
{{- $_ := set $source "namespaces" $.Values.namespaces -}}
{{- end -}}
{{- $sources = append $sources $source -}}
{{- end -}}
{{- $_ := set $config "sources" $sources -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
RBAC rules, split by where they can be granted (deploy/rbac-cluster.yaml,
deploy/rbac-enrichment.md, deploy/rbac-log-tail.yaml, deploy/rbac-detectors.yaml): the
namespaced resources the watch and enrichment read, and the cluster-scoped ones (nodes).
With scope: cluster both go into one ClusterRole; with scope: namespaced the first into a
Role per watched namespace and the second into a ClusterRole.
*/}}
{{- define "kew.rules.namespaced" -}}
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [get, list, watch]
{{- if .Values.enrichment.enabled }}
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get]
{{- if .Values.enrichment.logTail }}
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end }}
{{- if .Values.enrichment.namespaceLabels }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
{{- end }}
{{- range .Values.enrichment.ownerGroups }}
- apiGroups: [{{ . | quote }}]
  resources: ["*"]
  verbs: [get]
{{- end }}
{{- end }}
{{- if include "kew.watchesObjects" . }}
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{- define "kew.rules.clusterScoped" -}}
{{- if .Values.enrichment.enabled }}
- apiGroups: [""]
  resources: [nodes]
  verbs: [get]
{{- end }}
{{- if include "kew.watchesObjects" . }}
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{/* The daemon's own namespace: the ConfigMap store and the leader Lease (deploy/rbac-namespace.yaml). */}}
{{- define "kew.rules.own" -}}
{{- if eq .Values.state.backend "configmap" }}
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, update]
{{- end }}
{{- if .Values.ha.enabled }}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
{{- end }}
{{- end -}}

{{- define "kew.subjects" -}}
- kind: ServiceAccount
  name: {{ include "kew.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{- /*
"true" unless this release is a fleet's central instance without clusters of its own
(config.fleet set, config.clusters empty): that one reads a stream, never the Kubernetes
API, and is granted nothing (docs/topologies.md).
*/}}
{{- define "kew.readsApi" -}}
{{- $config := .Values.config | default dict -}}
{{- if and $config.fleet (not $config.clusters) -}}false{{- else -}}true{{- end -}}
{{- end -}}
