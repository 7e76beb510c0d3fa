"""Planning: turn a prompt, or one existing task, into a plan of tasks with an engineering order.

``plans`` names the pieces (a template's steps, the planned tasks, the decomposition);
``templates`` holds the five plans as data; ``template_choice`` scores a prompt against
them; ``subjects`` reads what the prompt is about; ``decomposition`` puts these together
into a task tree and checks any plan's shape. Everything here is deterministic: the same
input gives the same plan.
"""
