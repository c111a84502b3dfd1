"""Position-extension methods, one file each, registered by name (imported only when chosen).

Adding a method = one new module with a config dataclass, the pure math, and an `Extension` subclass, plus one
line here. Nothing patches a model on import.
"""
from harness.registry import Registry

EXTENSIONS = Registry("extension")
EXTENSIONS.register("none", "extensions.none:NoExtension")
EXTENSIONS.register("pi", "extensions.pi:PositionInterpolation")
EXTENSIONS.register("ntk", "extensions.ntk:NTKAware")
EXTENSIONS.register("dynamic-ntk", "extensions.dynamic_ntk:DynamicNTK")
EXTENSIONS.register("yarn", "extensions.yarn:Yarn")
EXTENSIONS.register("alibi", "extensions.alibi:Alibi")
EXTENSIONS.register("selfextend", "extensions.selfextend:SelfExtend")
EXTENSIONS.register("sinks", "extensions.sinks:Sinks")
EXTENSIONS.register("llama3", "extensions.llama3:Llama3")
EXTENSIONS.register("longrope", "extensions.longrope:LongRope")
EXTENSIONS.register("ntk-by-parts", "extensions.ntk_by_parts:NTKByParts")
EXTENSIONS.register("proportional", "extensions.proportional:Proportional")
EXTENSIONS.register("rerope", "extensions.rerope:ReRope")
EXTENSIONS.register("leaky-rerope", "extensions.leaky_rerope:LeakyReRope")
EXTENSIONS.register("string", "extensions.string_shift:String")
EXTENSIONS.register("lm-infinite", "extensions.lm_infinite:LMInfinite")
EXTENSIONS.register("dca", "extensions.dca:DualChunk")
EXTENSIONS.register("logn", "extensions.temperature:Logn")
EXTENSIONS.register("llama4-scaling", "extensions.temperature:Llama4Scaling")
