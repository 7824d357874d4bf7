use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("no service named `{name}` (services in this project: {})", known.join(", "))]
    UnknownService { name: String, known: Vec<String> },
    #[error(
        "no registry to push images to for context `{context}`: the project sets no `registry:` \
         and the cluster advertises none (ConfigMap kube-public/local-registry-hosting). \
         Set `registry:` in hoist.yaml or hoist-settings.yaml, e.g. `registry: localhost:5000`"
    )]
    NoRegistry { context: String },
    #[error("the project is not valid:\n{0}")]
    Config(#[from] hoist_config::ConfigErrors),
    #[error(transparent)]
    Kube(#[from] hoist_kube::KubeError),
    #[error(transparent)]
    Oci(#[from] hoist_oci::Error),
    #[error("{0}")]
    Other(String),
}
