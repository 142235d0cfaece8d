"""The course's PyTorch network (../shared/seeds/002, "Réseau de neurone (perceptron
multicouche)"), with the weights of its worked backpropagation example.

    backprop-explain import-torch examples/course_mynet.py:course --names course -o net.toml

reads it into a spec: the network of examples/mlp_3_2_2_cross_entropy.toml.
"""

import torch
import torch.nn as nn
import torch.optim as optim


# Définition du modèle
class MyNet(nn.Module):  # definition d'une classe qui décrit des réseaux voulus
    def __init__(self):
        super(MyNet, self).__init__()
        self.fc1 = nn.Sequential(  # Première couche : H
            nn.Linear(3, 2),  # Partie linéaire : 3 entrées, 2 neurones
            nn.Sigmoid()  # Activation : Sigmoid pour chaque neurone de la couche
        )
        self.fc2 = nn.Sequential(  # Deuxième couche : O
            nn.Linear(2, 2),  # Partie linéaire: 2 entrées, 2 neurones
            nn.Sigmoid()  # Activation Sigmoid pour chaque neurone de la couche
        )

    def forward(self, x):  # description de l'enchaînement des couches à l'inférence
        x = self.fc1(x)  # d'abord la couche H appliquée à l'entrée
        x = self.fc2(x)  # ensuite la couche O
        return x


def course():
    """The model with the slides' weights, the example <(0.15, 0.25, -0.5), chien>, the
    course's cross-entropy -Σ v_k ln out_k on the sigmoid outputs (no torch.nn loss is
    that: nn.CrossEntropyLoss applies a softmax first, so it is named) and SGD, η = 0.001."""
    model = MyNet()
    with torch.no_grad():
        model.fc1[0].weight.copy_(torch.tensor([[0.1, 2, 0.5], [0.3, -0.4, -0.5]]))
        model.fc1[0].bias.copy_(torch.tensor([0.2, -0.3]))
        model.fc2[0].weight.copy_(torch.tensor([[0.1, 1], [-0.3, -0.2]]))
        model.fc2[0].bias.copy_(torch.tensor([1.4, -1]))
    inputs = torch.tensor([[0.15, 0.25, -0.5]])
    targets = torch.tensor([[1.0, 0.0]])
    return model, inputs, targets, "cross_entropy", optim.SGD(model.parameters(), lr=0.001)
