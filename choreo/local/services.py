"""The services of a mesh, assembled from the layers below them.

Importing this module registers every agent kind the distribution ships with the agent loop
(``choreo.agent.kinds``): the router and the supervisor register themselves on import.
"""

from choreo import router, supervisor

#: The agent kinds that come with choreo beyond the loop's own (model, python).
SHIPPED_KINDS = (router.__name__, supervisor.__name__)
