"""triton-pack builder: spec -> export -> parity -> render -> validate -> write -> serve.

Each step lives in one module and hands a typed object to the next:

    spec.load_spec(path)            -> Spec
    sources.resolve_source(...)     -> ResolvedSource (the folder and its file hashes)
    model_files.read_hf_config(...) -> HFConfig; embedding_settings(...) -> EmbeddingSettings
    inputs.check_inputs(...)        -> CheckedInputs (HFConfig + registry entries, looked up once)
    export.export_onnx(...)         -> OnnxArtifact
    parity.check_parity(...)        -> ParityReport (and its verdict, ParityReport.judge)
    plan.plan_model(...)            -> ModelPlan (the tensor specs of every member)
    render.render_model(...)        -> dict of config.pbtxt texts, each parsed into ModelConfig
    write.write_configs_and_code()  -> files in the staging folder
    manifest.Manifest               -> manifest.json (typed, versioned; read and written there)
    pipeline.build_repository(...)  -> BuildResult (the order of the steps, the cache, the swap)
    storage.upload_repository(...)  -> RepositoryURI (content-addressed, manifest last)
    serve.LocalServer               -> a running tritonserver (a folder or an S3 URI)
    deploy.plan_deployment(...)     -> DeployPlan; deploy.render_manifests -> Kubernetes/KServe
    autoscale.QUEUE_TIME_RULE       -> the HPA metric, as PromQL and as arithmetic
    health.probe(client)            -> a ProbeResult per model (a real canary inference)
    verify.verify_spec(...)         -> a Verdict per model (served against its source)
    profile.run_sweep(...)          -> ProfileResult (perf_analyzer per concurrency level)
    tune.run_trials(...)            -> a Trial per candidate; tune.write_winner edits the spec
"""

from builder.errors import BuildError

__all__ = ["BuildError", "__version__"]

__version__ = "0.1.0"
