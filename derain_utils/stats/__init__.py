"""What is concluded: model-level tests, the three-way verdict, its power, and the record of it.

``inference`` (permutation tests per design with the trained model as the unit, Holm, the declared
three-way rule), ``power`` (simulations that calibrate the rule and size the seeds), ``verdict``
(``verdict.json``: the record every notebook ends with) and ``bootstrap`` (the report card's
intervals of means).
"""
