"""kube-event-watcher: few, well-explained alerts from the Kubernetes event stream."""

__version__ = "0.1.0"
