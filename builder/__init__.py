"""triton-pack builder: spec -> export -> parity -> render -> validate -> write -> serve.

Each step lives in one module and hands a typed object to the next:

    spec.load_spec(path)            -> Spec
    sources.resolve(model, spec)    -> ResolvedSource
    export.export_onnx(...)         -> OnnxArtifact
    parity.check_parity(...)        -> ParityReport
    plan.plan_model(...)            -> ModelPlan (the tensor specs of every member)
    render.render_model(...)        -> dict of config.pbtxt texts, each parsed into ModelConfig
    write.build_repository(...)     -> BuildResult (atomic swap, incremental, manifest)
    serve.LocalServer               -> a running tritonserver
"""

from builder.errors import BuildError

__all__ = ["BuildError", "__version__"]

__version__ = "0.1.0"
