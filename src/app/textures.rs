//! Every image a view uploads goes through one [`TextureStore`]: it loads the texture into the
//! window's egui context and keeps the CPU copy next to it.
//!
//! The CPU copy is what lets "Save view PNG" render a view offscreen at any resolution with the
//! software painter ([`super::soft`]): the offscreen context has its own font atlas,
//! and every other image comes from here. Loading always goes to the window's context, even
//! while a view is drawn offscreen, so a view never ends up holding a texture of the wrong
//! context.

use super::soft::SoftTextures;
use egui::{ColorImage, TextureHandle, TextureOptions};
use std::sync::Arc;

/// The window's textures with their pixels.
pub struct TextureStore {
    ctx: egui::Context,
    images: SoftTextures,
}

impl TextureStore {
    /// A store loading into the window's context `ctx`.
    pub fn new(ctx: &egui::Context) -> Self {
        Self {
            ctx: ctx.clone(),
            images: SoftTextures::default(),
        }
    }

    /// Uploads `image` as a new texture named `name`.
    pub fn load(
        &mut self,
        name: &str,
        image: Arc<ColorImage>,
        options: TextureOptions,
    ) -> TextureHandle {
        let handle = self.ctx.load_texture(name, image.clone(), options);
        self.prune();
        self.images.insert(handle.id(), image, options);
        handle
    }

    /// Replaces the pixels of `handle` (made by [`Self::load`]).
    pub fn set(
        &mut self,
        handle: &mut TextureHandle,
        image: Arc<ColorImage>,
        options: TextureOptions,
    ) {
        handle.set(image.clone(), options);
        self.images.insert(handle.id(), image, options);
    }

    /// Forgets the pixels of textures the context has freed (their handles were dropped).
    fn prune(&mut self) {
        let manager = self.ctx.tex_manager();
        let manager = manager.read();
        self.images.retain(|id| manager.meta(id).is_some());
    }

    /// The live textures with their pixels, for the software painter.
    pub fn soft_textures(&mut self) -> SoftTextures {
        self.prune();
        self.images.clone()
    }
}
