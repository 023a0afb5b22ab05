{{/* The chart's name. */}}
{{- define "coo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name alone when it contains the chart's name. */}}
{{- define "coo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels. */}}
{{- define "coo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "coo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "coo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: collibra-oauth-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* metadata.annotations of every object, when there are any. */}}
{{- define "coo.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "coo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "coo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "coo.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "coo.fullname" .)) .Values.collibra.existingSecret }}
{{- end }}

{{- define "coo.leaseName" -}}
{{- default (include "coo.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "coo.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs, and nothing more. Used by the ClusterRole
(cluster-wide) or by one Role per watched namespace.
*/}}
{{- define "coo.rules" -}}
# Watch OAuthClients; patch adds and removes the finalizer (never the spec).
- apiGroups: ["oauth.collibra.dev"]
  resources: ["oauthclients"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["oauth.collibra.dev"]
  resources: ["oauthclients/status"]
  verbs: ["get", "patch"]
# The credentials Secrets: watched with a label selector, created with a
# claim before registering, patched with the credentials. Deleted only to
# change a Secret's type (Kubernetes keeps it fixed): the exact Secret seen
# (uid and resourceVersion preconditions), after its credentials are copied
# to a backup Secret the OAuthClient owns, which is deleted in turn.
# Otherwise garbage collection removes them through the ownerReference.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# CollibraConnections: watched, the finalizer patched, status written.
# Their credentials Secrets are read, and watched by name (metadata only,
# a field selector on metadata.name), with the Secret rule above.
- apiGroups: ["oauth.collibra.dev"]
  resources: ["collibraconnections"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["oauth.collibra.dev"]
  resources: ["collibraconnections/status"]
  verbs: ["get", "patch"]
# A connection's CA bundle may be in a ConfigMap: read by name, and watched
# by name (metadata only); a name-selected watch takes list and watch.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
Cluster-wide mode only: ClusterCollibraConnections (cluster-scoped, so a
namespaced installation cannot watch them and turns them off).
*/}}
{{- define "coo.clusterConnectionRules" -}}
- apiGroups: ["oauth.collibra.dev"]
  resources: ["clustercollibraconnections"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["oauth.collibra.dev"]
  resources: ["clustercollibraconnections/status"]
  verbs: ["get", "patch"]
# Namespace labels, for a ClusterCollibraConnection's namespaceSelector.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
