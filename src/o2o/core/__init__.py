"""The vocabulary every part shares: the scenario and the network it draws, episodes, outcomes,
the Dec-POMDP (observation, mask, rewards), episode-seed ranges, metrics, errors."""
