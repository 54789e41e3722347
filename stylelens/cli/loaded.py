"""Open the network a command names: `stylelens.loading.loaded`, re-exported under the name the verbs import."""
from stylelens.loading.loaded import LoadedNetwork, open_network, require_mapping

__all__ = ['LoadedNetwork', 'open_network', 'require_mapping']
